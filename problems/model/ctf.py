"""Contrast transfer function in pixel units (paper Eq. 1's ``C_theta``).

RELION's convention (positive first lobe, so density stays white):

.. math::

    \\mathrm{CTF}(\\mathbf k) = E(k)\\,\\sin\\big(\\pi\\lambda\\,\\Delta f(\\alpha)\\,k^2
        - \\tfrac{\\pi}{2} C_s \\lambda^3 k^4 + \\arcsin Q_0 + \\varphi\\big),
    \\qquad E(k) = e^{-B k^2 / 4},

    \\Delta f(\\alpha) = \\tfrac12(\\Delta f_U + \\Delta f_V)
        + \\tfrac12(\\Delta f_U - \\Delta f_V)\\cos 2(\\alpha - \\alpha_{ast}),

with ``k = |k|`` in cycles/pixel, ``alpha`` the angle of ``k``, lengths
(defocus, wavelength, Cs) in pixels and ``B`` in pixels^2; the whole CTF is
multiplied by a per-image scale ``S`` (RELION's ``rlnCtfScalefactor``, 1 by
default), as RELION's ``CTF::getCTF`` does.  Every parameter is per image
(shape (n,)) or one scalar for all images: optics groups may differ in
voltage, Cs and amplitude contrast.  The CTF is even
in ``k`` so the half-plane band of :mod:`problems.model.grids` carries it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

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
    wavelength : float or ndarray
        Electron wavelength, pixels (per image when optics groups differ).
    spherical_aberration : float or ndarray
        Cs, pixels.
    amplitude_contrast : float or ndarray
        Q0 (dimensionless).
    bfactor : ndarray
        Envelope B-factor, pixels^2.
    phase_shift : ndarray
        Additional phase shift, radians.
    scale : float or ndarray
        Multiplies the whole CTF (RELION's ``rlnCtfScalefactor``); 1 by default.
    """

    defocus_u: np.ndarray
    defocus_v: np.ndarray
    astigmatism_angle: np.ndarray
    wavelength: float | np.ndarray
    spherical_aberration: float | np.ndarray
    amplitude_contrast: float | np.ndarray
    bfactor: np.ndarray
    phase_shift: np.ndarray
    scale: float | np.ndarray = 1.0

    def subset(self, idx) -> "CTFParams":
        """The parameters of images ``idx`` (scalars, shared by every image, stay scalars)."""
        pick = lambda v: v[idx] if np.ndim(v) else v  # noqa: E731
        return CTFParams(*(pick(getattr(self, f.name)) for f in fields(self)))


def _per_image(value) -> np.ndarray:
    """A per-image array as a column (n, 1); a scalar stays a 0-d array (broadcasts over all)."""
    v = np.asarray(value, dtype=np.float64)
    return v[:, None] if v.ndim else v


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
    lam, cs = _per_image(params.wavelength), _per_image(params.spherical_aberration)
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    phase = (chi + np.arcsin(_per_image(params.amplitude_contrast))
             + np.asarray(params.phase_shift, float)[:, None])
    envelope = np.exp(-np.asarray(params.bfactor, float)[:, None] * k2 / 4.0)
    out = envelope * np.sin(phase)
    if np.ndim(params.scale) or params.scale != 1.0:     # exact when there is no scale factor
        out = out * _per_image(params.scale)
    return out
