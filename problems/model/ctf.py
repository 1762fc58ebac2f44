"""Contrast transfer function in pixel units (paper Eq. 1's ``C_theta``).

RELION's convention (positive first lobe, so density stays white):

.. math::

    \\mathrm{CTF}(\\mathbf k) = E(k)\\,\\sin\\big(\\pi\\lambda\\,\\Delta f(\\alpha)\\,k^2
        - \\tfrac{\\pi}{2} C_s \\lambda^3 k^4 + \\arcsin Q_0 + \\varphi\\big),
    \\qquad E(k) = e^{-B k^2 / 4},

    \\Delta f(\\alpha) = \\tfrac12(\\Delta f_U + \\Delta f_V)
        + \\tfrac12(\\Delta f_U - \\Delta f_V)\\cos 2(\\alpha - \\alpha_{ast}),

with ``k = |k|`` in cycles/pixel, ``alpha`` the angle of ``k``, lengths
(defocus, wavelength, Cs) in pixels and ``B`` in pixels^2.  The CTF is even
in ``k`` so the half-plane band of :mod:`problems.model.grids` carries it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CTFParams:
    """Per-image CTF parameters in pixel units (arrays of shape (n,) or scalars).

    Attributes
    ----------
    defocus_u, defocus_v : ndarray
        Defocus along the major/minor axes, pixels (positive = underfocus).
    astigmatism_angle : ndarray
        Angle of the major axis, radians.
    wavelength : float
        Electron wavelength, pixels.
    spherical_aberration : float
        Cs, pixels.
    amplitude_contrast : float
        Q0 (dimensionless).
    bfactor : ndarray
        Envelope B-factor, pixels^2.
    phase_shift : ndarray
        Additional phase shift, radians.
    """

    defocus_u: np.ndarray
    defocus_v: np.ndarray
    astigmatism_angle: np.ndarray
    wavelength: float
    spherical_aberration: float
    amplitude_contrast: float
    bfactor: np.ndarray
    phase_shift: np.ndarray

    def subset(self, idx) -> "CTFParams":
        return CTFParams(self.defocus_u[idx], self.defocus_v[idx], self.astigmatism_angle[idx],
                         self.wavelength, self.spherical_aberration, self.amplitude_contrast,
                         self.bfactor[idx], self.phase_shift[idx])


def evaluate_ctf(params: CTFParams, k: np.ndarray) -> np.ndarray:
    """CTF of every image at frequencies ``k`` (cycles/pixel, shape (T, 2)).

    Returns an array of shape (n_images, T), float64.
    """
    k = np.asarray(k, dtype=np.float64)
    k2 = (k**2).sum(axis=1)[None, :]
    alpha = np.arctan2(k[:, 1], k[:, 0])[None, :]
    du = np.asarray(params.defocus_u, float)[:, None]
    dv = np.asarray(params.defocus_v, float)[:, None]
    ast = np.asarray(params.astigmatism_angle, float)[:, None]
    defocus = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2 * (alpha - ast))
    lam = params.wavelength
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * params.spherical_aberration * lam**3 * k2**2
    phase = chi + np.arcsin(params.amplitude_contrast) + np.asarray(params.phase_shift, float)[:, None]
    envelope = np.exp(-np.asarray(params.bfactor, float)[:, None] * k2 / 4.0)
    return envelope * np.sin(phase)
