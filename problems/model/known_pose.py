"""The known-pose (refinement) objective: per-image Gaussian NLL at given poses.

See :mod:`problems.catalog.refine` for the problem and its equations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import PartialDFT, cube_half_width
from .grids import Band
from .projector import Slicer, slice_coordinates


@dataclass
class KnownPoseTerms:
    """A batch: band coefficients (B, D) complex, CTF (B, D) real, slice coordinates (B, D, 3)."""

    images: np.ndarray
    ctf: np.ndarray
    coords: np.ndarray

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


class KnownPoseLikelihood:
    """Per-image Gaussian NLL at known poses, its gradient and (constant) Hessian.

    The same evaluator interface as :class:`problems.model.marginal.MarginalLikelihood`
    (``n``, ``dtype``, ``prepare``, ``nll``, ``nll_and_grad``, ``hvp``), which
    :class:`problems.oracle.CountingOracle` calls; a batch also carries each
    image's rotation, ``prepare(images, ctf, rotations)``, and the slice
    coordinates are computed per batch (storing them for every image would
    take ``3 x D`` floats per image: 5 GB at 192 px near Nyquist).
    It holds no image: it is a pure function of the batch it is given.

    With ``S_i = T_i F x`` (``F``: oversampled partial DFT, ``T_i``:
    trilinear slicing at image ``i``'s pose) and ``r_i = I_i - C_i S_i``:

    * ``NLL_i = sum_t c_t |r_it|^2 / (2 sigma^2)``;
    * gradient of the batch mean: ``F^T T^T g`` with
      ``g_it = c_t C_it (C_it S_it - I_it) / (sigma^2 B)`` (the slice-space
      gradient ``d/dRe S + i d/dIm S``);
    * Hessian times ``v``: ``F^T T^T (c C^2 T F v) / (sigma^2 B)``.

    Parameters
    ----------
    box_size : int
    band : Band
    sigma : float
    dtype : float32 (hot loop) or float64 (derivative checks, spectra)
    """

    marginalises = False

    def __init__(self, box_size: int, band: Band, sigma: float, dtype=np.float32):
        self.n = int(box_size)
        self.band, self.sigma = band, float(sigma)
        self.dtype = np.dtype(dtype)
        self.cdtype = np.result_type(self.dtype, np.complex64)
        self.m_max = cube_half_width(band.r_max)
        self.dft = PartialDFT(self.n, self.m_max, self.dtype)
        self.mult = band.multiplicity.astype(self.dtype)
        self.scale = 1.0 / (2.0 * self.sigma**2)

    def prepare(self, images: np.ndarray, ctf: np.ndarray, rotations: np.ndarray) -> KnownPoseTerms:
        """A batch: band coefficients (B, D), CTFs (B, D) and RELION matrices ``A_i`` (B, 3, 3)."""
        return KnownPoseTerms(np.ascontiguousarray(images, dtype=self.cdtype),
                              np.ascontiguousarray(ctf, dtype=self.dtype),
                              slice_coordinates(np.asarray(rotations), self.band.k, self.dtype))

    def _slicer(self, terms: KnownPoseTerms) -> Slicer:
        # No mirror-slice search: random poses have no antipodal pairs to exploit.
        return Slicer(terms.coords, self.m_max, use_symmetry=False)

    def slices(self, x: np.ndarray, terms: KnownPoseTerms) -> np.ndarray:
        """``S_i = T_i F x`` for the batch, shape (B, D) complex."""
        return self._slicer(terms).forward(self.dft.forward(np.asarray(x, dtype=self.dtype)))

    def _adjoint(self, slicer: Slicer, g: np.ndarray) -> np.ndarray:
        return self.dft.adjoint(slicer.adjoint(np.ascontiguousarray(g, dtype=self.cdtype)))

    def nll(self, x: np.ndarray, terms: KnownPoseTerms) -> np.ndarray:
        """Per-image NLL (B,), accumulated in float64."""
        r = (terms.images - terms.ctf * self.slices(x, terms)).astype(np.complex128)
        return (np.abs(r) ** 2 @ self.band.multiplicity) * self.scale

    def nll_and_grad(self, x: np.ndarray, terms: KnownPoseTerms) -> tuple[np.ndarray, np.ndarray]:
        """Per-image NLL (B,) and the gradient of their mean with respect to ``x``."""
        slicer = self._slicer(terms)
        s = slicer.forward(self.dft.forward(np.asarray(x, dtype=self.dtype)))
        r = terms.images - terms.ctf * s
        nll = (np.abs(r.astype(np.complex128)) ** 2 @ self.band.multiplicity) * self.scale
        g = -(self.mult * terms.ctf * r) * self.dtype.type(1.0 / (self.sigma**2 * terms.size))
        return nll, self._adjoint(slicer, g)

    def hvp(self, x: np.ndarray, v: np.ndarray, terms: KnownPoseTerms) -> np.ndarray:
        """Hessian of the batch-mean NLL times ``v`` (independent of ``x``)."""
        slicer = self._slicer(terms)
        u = slicer.forward(self.dft.forward(np.asarray(v, dtype=self.dtype)))
        w = self.mult * terms.ctf**2 * self.dtype.type(1.0 / (self.sigma**2 * terms.size))
        return self._adjoint(slicer, w * u)


@dataclass(frozen=True)
class GaussianPrior:
    """``rho(x) = lambda/2 ||x||^2`` with the interface :class:`problems.model.prior.DensityPrior` has."""

    lam: float

    def describe(self) -> dict:
        return {"prior": f"Gaussian lambda/2 ||x||^2, lambda={self.lam}"}

    def value(self, x: np.ndarray) -> float:
        return 0.5 * self.lam * float(np.sum(np.square(x, dtype=np.float64)))

    def value_and_accumulate_grad(self, x: np.ndarray, grad: np.ndarray, scale: float = 1.0) -> float:
        if self.lam:
            grad += grad.dtype.type(scale * self.lam) * x
        return self.value(x)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        return self.value(x), self.lam * x

    def hess_diag(self, x: np.ndarray) -> np.ndarray:
        return np.full_like(x, self.lam)
