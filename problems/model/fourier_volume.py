"""Toader, Brubaker & Lederman's known-pose model: a free complex Fourier volume, sliced without oversampling.

The unknown is the 3D DFT ``v`` on the ``n^3`` grid (centred: ``v[z, y, x]``
holds frequency ``(x, y, z) - n//2``), a free complex vector: no Hermitian
symmetry is imposed, as in their code.  Image ``i`` (pose ``A_i``, RELION
convention, CTF ``C_i``, shift ``s_i`` in pixels) is modelled on the full
disc ``|k| <= r_max`` (:func:`problems.model.grids.disc_frequencies`) as

.. math:: (P_i v)(k) = C_i(k)\\, e^{-2\\pi i\\, k\\cdot s_i / n}\\, (S_{A_i} v)(k),
          \\qquad (S_A v)(k) = v\\big(A^T [k, 0]\\big),

with ``v`` at off-grid points by trilinear interpolation (``"tri"``, the
default, their runs) or the nearest grid point (``"nn"``, their condition
numbers).  The per-image loss and the batch mean (the oracle adds the prior):

.. math:: \\mathrm{NLL}_i(v) = \\frac{1}{2\\sigma^2} \\sum_k |y_i(k) - (P_i v)(k)|^2 ,
          \\qquad \\nabla_v \\frac{1}{|B|}\\sum_{i\\in B}\\mathrm{NLL}_i
          = \\frac{1}{\\sigma^2 |B|}\\sum_i S_i^T C_i (C_i S_i v - \\bar\\phi_i y_i),

where ``phi_i`` is the shift phase (moved onto the data: :func:`.slice_kernels.demodulate`).
The Hessian ``H_B = (1/(sigma^2 |B|)) sum_i S_i^T diag(C_i^2) S_i`` is real,
symmetric and independent of ``v`` and of the shifts; with ``"nn"`` it is
diagonal (a slice is a 0/1 selection), with ``"tri"`` each voxel couples to
its 26 neighbours only.  :meth:`FourierVolumeLikelihood.hess_diag` gives its
diagonal exactly (``sum_i w^2 C^2`` over the corners a sample touches).

**The real view.**  The optimizer sees ``v`` as a flat real vector of length
``2 n^3``: the complex64 (float32 work) or complex128 (float64 checks) array
viewed as reals, ``(Re v_0, Im v_0, Re v_1, ...)``.  For a real function of
``v`` the gradient with respect to that vector is ``dF/dRe v + i dF/dIm v``
viewed the same way, and the Hessian of the real view acts as the complex
map above (``H`` real).  So ``value_and_grad`` and ``hvp`` return complex
arrays viewed as reals, and a diagonal preconditioner repeats each entry of
``diag(H)`` for the real and imaginary part.

Kernels: :mod:`problems.model.slice_kernels` (numba, one private accumulator
per thread for the scatter).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .grids import disc_frequencies
from .slice_kernels import demodulate, sweep

INTERPOLATIONS = ("tri", "nn")


@dataclass
class FourierTerms:
    """A batch: demodulated disc samples (B, T) complex, CTF (B, T) real, rotations (B, 3, 3) real."""

    images: np.ndarray
    ctf: np.ndarray
    rotations: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rotations.shape[0])


class FourierVolumeLikelihood:
    """Per-image Gaussian NLL of the free Fourier volume at known poses (module docstring).

    The evaluator interface of :class:`problems.oracle.CountingOracle`
    (``n``, ``shape``, ``dtype``, ``prepare``, ``nll``, ``nll_and_grad``,
    ``hvp``), plus :meth:`hess_diag` (exact) and :meth:`slices`.

    Parameters
    ----------
    box_size : int
        ``n``: the volume is ``n^3`` complex values, images ``n x n``.
    r_max : float
        Disc radius in pixels of frequency, ``<= n/2 - 1`` (every trilinear
        corner then lies on the grid).
    sigma : float
        Noise level per complex coefficient (``E|noise(k)|^2 = sigma^2``).
    interpolation : "tri" or "nn"
    dtype : float32 (hot loop) or float64 (derivative checks)
    """

    marginalises = False

    def __init__(self, box_size: int, r_max: float, sigma: float, interpolation: str = "tri", dtype=np.float32):
        self.n = int(box_size)
        if not 0 < r_max <= self.n / 2 - 1:
            raise ValueError(f"Fourier-volume model: need 0 < r_max <= n/2 - 1 = {self.n / 2 - 1}, got {r_max}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.r_max, self.sigma, self.interpolation = float(r_max), float(sigma), interpolation
        self.dtype = np.dtype(dtype)
        self.cdtype = np.result_type(self.dtype, np.complex64)
        self.k = disc_frequencies(self.n, self.r_max)
        self._kxy = self.k.astype(self.dtype)
        self._order = np.lexsort((self.k[:, 0], self.k[:, 1])).astype(np.int64)      # raster: kernel locality
        self.shape = (2 * self.n**3,)

    # ----------------------------------------------------------------- views
    def volume(self, x: np.ndarray) -> np.ndarray:
        """The complex volume (n, n, n) of a real view ``x`` (no copy when ``x`` is contiguous in ``dtype``)."""
        return np.ascontiguousarray(x, dtype=self.dtype).view(self.cdtype).reshape((self.n,) * 3)

    def real_view(self, v: np.ndarray) -> np.ndarray:
        """The flat real view (2 n^3,) of a complex volume."""
        return np.ascontiguousarray(v, dtype=self.cdtype).reshape(-1).view(self.dtype)

    def prepare(self, images: np.ndarray, ctf: np.ndarray, rotations: np.ndarray,
                shifts: np.ndarray | None = None) -> FourierTerms:
        """A batch; ``shifts`` (B, 2) pixels are moved onto the images (module docstring)."""
        images = np.ascontiguousarray(images, dtype=self.cdtype)
        if shifts is not None:
            out = np.empty_like(images)
            demodulate(images, self.k.astype(np.float64), np.ascontiguousarray(shifts, np.float64), self.n, out)
            images = out
        return FourierTerms(images, np.ascontiguousarray(ctf, dtype=self.dtype),
                            np.ascontiguousarray(rotations, dtype=self.dtype))

    # --------------------------------------------------------------- passes
    def _sweep(self, vol, terms: FourierTerms, mode: int, weight: float):
        """Run :func:`.slice_kernels.sweep`; returns (sum_t |c s - y|^2 per image, scattered volume or None)."""
        b = terms.size
        threads = numba.get_num_threads()
        chunks = max(1, min(b, threads if mode else 4 * threads))
        partial = np.zeros((chunks, self.n**3 if mode else 1), dtype=self.cdtype)
        sq = np.zeros(b, dtype=np.float64)
        flat = np.zeros(1, self.cdtype) if vol is None else vol.reshape(-1)
        sweep(flat, self.n, terms.rotations, self._kxy, self._order, terms.images, terms.ctf, float(weight), int(mode),
              self.interpolation == "nn", partial, sq)
        if not mode:
            return sq, None
        out = partial[0]
        for ch in range(1, chunks):
            out += partial[ch]
        return sq, out

    def slices(self, x: np.ndarray, terms: FourierTerms) -> np.ndarray:
        """``S_i v`` (B, T) complex, without CTF or phase (a reference path: numpy, not the kernel)."""
        v = self.volume(x)
        q = (self.k[None, :, 0:1] * terms.rotations[:, None, 0, :].astype(np.float64)
             + self.k[None, :, 1:2] * terms.rotations[:, None, 1, :].astype(np.float64)) + self.n // 2
        if self.interpolation == "nn":
            i = np.floor(q + 0.5).astype(np.int64)
            return v[i[..., 2], i[..., 1], i[..., 0]]
        lo = np.minimum(np.floor(q).astype(np.int64), self.n - 2)
        f = q - lo
        out = np.zeros(q.shape[:2], dtype=np.complex128)
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    wgt = ((f[..., 0] if dx else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1])
                           * (f[..., 2] if dz else 1 - f[..., 2]))
                    out += wgt * v[lo[..., 2] + dz, lo[..., 1] + dy, lo[..., 0] + dx]
        return out.astype(self.cdtype)

    def nll(self, x: np.ndarray, terms: FourierTerms) -> np.ndarray:
        """Per-image NLL (B,), accumulated in float64."""
        sq, _ = self._sweep(self.volume(x), terms, 0, 0.0)
        return sq / (2.0 * self.sigma**2)

    def nll_and_grad(self, x: np.ndarray, terms: FourierTerms) -> tuple[np.ndarray, np.ndarray]:
        """Per-image NLL (B,) and the gradient of their mean, as the real view (2 n^3,)."""
        sq, g = self._sweep(self.volume(x), terms, 1, 1.0 / (self.sigma**2 * terms.size))
        return sq / (2.0 * self.sigma**2), g.view(self.dtype)

    def hvp(self, x: np.ndarray, v: np.ndarray, terms: FourierTerms) -> np.ndarray:
        """Hessian of the batch-mean NLL times ``v`` (real views; independent of ``x``)."""
        _, out = self._sweep(self.volume(v), terms, 2, 1.0 / (self.sigma**2 * terms.size))
        return out.view(self.dtype)

    def hess_diag(self, terms: FourierTerms, ctf: bool = True) -> np.ndarray:
        """Exact ``diag(H_B)`` on the grid, (n, n, n) real (``ctf=False``: as if every ``C = 1``)."""
        if not ctf:
            terms = FourierTerms(terms.images, np.ones_like(terms.ctf), terms.rotations)
        _, out = self._sweep(None, terms, 3, 1.0 / (self.sigma**2 * terms.size))
        return np.ascontiguousarray(out.real).reshape((self.n,) * 3)


def density_to_fourier(x: np.ndarray) -> np.ndarray:
    """The centred DFT of a real volume, scaled so a central slice is the unitary 2D DFT of its projection.

    ``v = fftshift(fftn(ifftshift(x))) / n`` (complex128, (n, n, n)): the
    projection theorem ``F_2[sum_z x](k) = F_3[x](k, 0)`` and the unitary 2D
    DFT's ``1/n``.
    """
    n = x.shape[0]
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(np.asarray(x, np.float64)))) / n
