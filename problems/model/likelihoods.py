"""The likelihood part of a problem: marginal over poses (ab initio) or at known poses (refinement).

:class:`problems.problem.Problem` is one type for every family; what differs
between the ab-initio problems (Punjani & Brubaker, Eqs. 1-6) and the
known-pose refinement (Toader, Brubaker & Lederman) is only the likelihood,
given to the problem as one of these parts:

* :class:`MarginalPart`: ``NLL_i(x) = -log sum_j w_j exp(-|I_i - C_i S_j x|^2 / (2 sigma^2))``
  over a pose quadrature (:class:`problems.model.marginal.MarginalLikelihood`);
* :class:`KnownPosePart`: ``NLL_i(x) = |I_i - C_i S_{A_i} x|^2 / (2 sigma^2)``
  at each image's own pose ``A_i`` (:class:`problems.model.known_pose.KnownPoseLikelihood`);
* :class:`FourierVolumePart`: the same at known poses, but the unknown is a
  free complex Fourier volume ``v`` sliced on the full disc without
  oversampling, Toader et al.'s own model
  (:class:`problems.model.fourier_volume.FourierVolumeLikelihood`); its
  variable is the flat real view of ``v`` (``shape``), which the problem and
  the oracle take from the part.

A part builds the evaluator in a precision (``build(dtype)``), says which
per-image arrays a batch needs besides images and CTFs (``poses``: the known
part needs each image's rotation), describes itself for the problem's
metadata, and computes the band power a density predicts for some images
(the scale of :meth:`problems.problem.Problem.initial_density`).  Both
evaluators take a batch as ``prepare(images, ctf, *per_image_poses)``.
"""
from __future__ import annotations

import numpy as np

from .fourier_volume import FourierVolumeLikelihood, density_to_fourier
from .grids import Band, disc_frequencies, make_band
from .known_pose import KnownPoseLikelihood
from .marginal import MarginalLikelihood, make_likelihood
from .poses import make_quadrature

INTERPOLATION = "trilinear on the 2x oversampled centred DFT (N^-1 normalised)"


class MarginalPart:
    """Unknown poses, marginalised over the quadrature of ``r_max`` (paper Eqs. 1-6)."""

    kind = "marginal"
    needs_poses = False

    def __init__(self, box_size: int, r_max: float, sigma: float, shift_extent: float, shift_sigma: float):
        self.box_size = int(box_size)
        self.band = make_band(r_max)
        self.sigma = float(sigma)
        self.quadrature = make_quadrature(r_max, shift_extent=shift_extent, shift_sigma=shift_sigma)

    def build(self, dtype, device: str = "cpu"):
        """The CPU path, or the array-module path of ``device`` (:func:`.marginal.make_likelihood`)."""
        return make_likelihood(self.box_size, self.band, self.quadrature, self.sigma, dtype=dtype, device=device)

    def metadata(self) -> dict:
        return {"quadrature": self.quadrature.describe(), "sigma": self.sigma}

    def predicted_power(self, lik: MarginalLikelihood, x0: np.ndarray, images, ctf, poses) -> float:
        """``sum_it c_t C_it^2 P_t``, ``P_t`` the pose-averaged power of ``x0``'s slices."""
        slice_power = np.mean(np.abs(lik.slices(x0).astype(np.complex128)) ** 2, axis=0)
        return float(np.sum(self.band.multiplicity * ctf.astype(np.float64) ** 2 * slice_power))

    def __repr__(self) -> str:
        return f"M={self.quadrature.size}"


class KnownPosePart:
    """Known poses: a Gaussian NLL at each image's own rotation (linear least squares)."""

    kind = "known-pose"
    needs_poses = True

    def __init__(self, box_size: int, r_max: float, sigma: float):
        self.box_size = int(box_size)
        self.band = make_band(r_max)
        self.sigma = float(sigma)

    def build(self, dtype) -> KnownPoseLikelihood:
        return KnownPoseLikelihood(self.box_size, self.band, self.sigma, dtype=dtype)

    def metadata(self) -> dict:
        return {"sigma": self.sigma}

    def predicted_power(self, lik: KnownPoseLikelihood, x0: np.ndarray, images, ctf, poses) -> float:
        """``sum_it c_t C_it^2 |S_{A_i}(x0)_t|^2`` at the images' own poses (float64)."""
        lik64 = lik if lik.dtype == np.float64 else self.build(np.float64)
        terms = lik64.prepare(images, ctf, poses)
        return float(np.sum(self.band.multiplicity * np.abs(terms.ctf * lik64.slices(x0.astype(np.float64), terms)) ** 2))

    def __repr__(self) -> str:
        return f"D={self.band.size}, known poses"


class FourierVolumePart:
    """Known poses on Toader et al.'s free complex Fourier volume (trilinear or nearest-neighbour slices).

    ``band`` is the full disc (:func:`problems.model.grids.disc_frequencies`)
    with multiplicity 1: both ``k`` and ``-k`` are data.  ``shape`` is the
    real view's, ``(2 n^3,)``; :meth:`from_density` maps a real-space volume
    (the initial spheres) into the variable.
    """

    kind = "known-pose"
    needs_poses = True

    def __init__(self, box_size: int, r_max: float, sigma: float, interpolation: str = "tri"):
        self.box_size = int(box_size)
        k = disc_frequencies(self.box_size, r_max)
        self.band = Band(r_max=float(r_max), k=k, multiplicity=np.ones(k.shape[0]))
        self.sigma = float(sigma)
        self.interpolation_kind = interpolation
        self.interpolation = (f"{'trilinear' if interpolation == 'tri' else 'nearest-neighbour'} slices of the "
                              "free complex Fourier volume on the n^3 grid (no oversampling), full disc")
        self.shape = (2 * self.box_size**3,)

    def build(self, dtype) -> FourierVolumeLikelihood:
        return FourierVolumeLikelihood(self.box_size, self.band.r_max, self.sigma, self.interpolation_kind, dtype)

    def metadata(self) -> dict:
        return {"sigma": self.sigma, "variable": "free complex Fourier volume, flat float32 view (2 n^3)",
                "slice_interpolation": self.interpolation_kind}

    def from_density(self, x: np.ndarray) -> np.ndarray:
        """The real view (2 n^3,) float32 of :func:`~problems.model.fourier_volume.density_to_fourier`."""
        return density_to_fourier(x).astype(np.complex64).reshape(-1).view(np.float32)

    def predicted_power(self, lik: FourierVolumeLikelihood, x0: np.ndarray, images, ctf, poses) -> float:
        """``sum_ik |C_ik (S_i v0)_k|^2`` at the images' own poses: twice the NLL of zero images (sigma = 1)."""
        terms = lik.prepare(np.zeros_like(images), ctf, poses)
        return float(np.sum(lik.nll(x0, terms)) * 2.0 * lik.sigma**2)

    def __repr__(self) -> str:
        return f"T={self.band.size}, known poses, Fourier volume ({self.interpolation_kind})"
