"""The known-pose (refinement) objective: per-image Gaussian NLL at given poses.

See :mod:`problems.catalog.refine` for the problem and its equations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import scipy.fft

from .fourier import PartialDFT, cube_half_width, partial_dft_matrix
from .grids import Band
from .projector import Slicer, slice_coordinates


class CubeFFT:
    """The map of :class:`problems.model.fourier.PartialDFT` by one FFT of the zero-padded volume.

    ``forward(x)[mz, my, mx] = Vhat(m / 2)`` for ``|m_i| <= m_max``: the
    volume, its centre moved to the origin, zero-padded to ``2N`` per axis,
    one real FFT (``Vhat(m/2) = N^-1 FFT_2N[m mod 2N]``), the Hermitian half
    ``mx >= 0`` extracted and the rest filled by conjugation; ``adjoint(g) =
    Re(F^H g)`` by one inverse FFT of ``g`` scattered into the ``2N`` grid
    (``F^H = (2N)^3 ifftn``).  ``O(N^3 log N)`` instead of the three dense
    products' ``O(N^3 K)``: cheaper once the band's cube ``K = 2 m_max + 1``
    is a good part of ``2N`` (bands near Nyquist, the refinement setting).
    ``f`` (the per-axis matrix) is built on demand for the analytic diagonal.
    """

    def __init__(self, n: int, m_max: int, real_dtype=np.float32):
        self.n, self.m_max = int(n), int(m_max)
        if self.m_max > self.n - 1:
            raise ValueError(f"cube half-width {m_max} needs m_max < N = {n}")
        self.real_dtype = np.dtype(real_dtype)
        self.complex_dtype = np.result_type(self.real_dtype, np.complex64)
        self._pad = (np.arange(n) - n // 2) % (2 * n)
        self._m = np.arange(-m_max, m_max + 1) % (2 * n)

    @property
    def k(self) -> int:
        return 2 * self.m_max + 1

    @property
    def f(self) -> np.ndarray:
        return (partial_dft_matrix(self.n, self.m_max, np.complex128) / self.n ** (1.0 / 3.0)).astype(
            self.complex_dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, m = self.n, self.m_max
        big = np.zeros((2 * n,) * 3, dtype=self.real_dtype)
        big[np.ix_(self._pad, self._pad, self._pad)] = x
        spec = scipy.fft.rfftn(big, workers=-1)                                  # (2N, 2N, N + 1)
        half = spec[np.ix_(self._m, self._m, np.arange(m + 1))] * self.real_dtype.type(1.0 / n)
        cube = np.empty((self.k,) * 3, dtype=self.complex_dtype)
        cube[:, :, m:] = half
        cube[:, :, :m] = half[::-1, ::-1, m:0:-1].conj()
        return cube

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        n = self.n
        big = np.zeros((2 * n,) * 3, dtype=self.complex_dtype)
        big[np.ix_(self._m, self._m, self._m)] = g
        out = scipy.fft.ifftn(big, workers=-1, overwrite_x=True)
        scale = self.real_dtype.type((2 * n) ** 3 / n)
        return np.ascontiguousarray(out[np.ix_(self._pad, self._pad, self._pad)].real * scale)


def cube_dft(n: int, m_max: int, real_dtype=np.float32):
    """:class:`CubeFFT` when the band's cube spans more than ``N`` half-indices, else :class:`PartialDFT`.

    The dense products cost ~``2 N^3 K`` real flops for the first stage
    alone, the two FFTs of ``(2N)^3`` points ~``2 x 5 (2N)^3 log2 (2N)^3``:
    at ``N = 128`` near Nyquist (``K = 255``) the FFT is ~7x less work.
    """
    return CubeFFT(n, m_max, real_dtype) if 2 * m_max + 1 > n else PartialDFT(n, m_max, real_dtype)


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
        self.dft = cube_dft(self.n, self.m_max, self.dtype)
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
