"""Densities made of isotropic 3D Gaussians, and their exact projections in Fourier space.

Why: images simulated with the objective's own trilinear interpolation fit
the objective exactly (the "inverse crime"); a Gaussian mixture has an
analytic Fourier transform, so its images are computed exactly at
continuous poses, independently of any interpolation.

A mixture (pixel units, vectors ``(x, y, z)`` relative to the centre voxel
``c = N // 2``) with centres ``c_j``, standard deviations ``s_j`` and peak
densities ``a_j``:

.. math::

    f(\\mathbf r) = \\sum_j a_j \\exp\\big(-|\\mathbf r - \\mathbf c_j|^2 / (2 s_j^2)\\big).

Its ground-truth voxel density is ``f`` sampled at the voxel centres.  In
the objective's normalisation (:mod:`problems.model.fourier`,
``Vhat(q) = N^-1 sum_r x[r] exp(-2 pi i q.(r - c) / N)``, a central slice
equals the unitary DFT of the projection) the transform is, to the
sampling's aliasing error ``exp(-2 pi^2 s^2 (1 - |q| / N)^2)`` (below 1e-5
in the band for ``s >= 1`` px),

.. math::

    \\hat V(\\mathbf q) = N^{-1} \\sum_j a_j (2\\pi)^{3/2} s_j^3
        \\exp(-2\\pi^2 s_j^2 |\\mathbf q|^2 / N^2)\\, \\exp(-2\\pi i\\, \\mathbf q\\cdot\\mathbf c_j / N).

An image at rotation ``A`` and shift ``t`` samples it at ``q = A^T [k, 0]``,
so ``q . c_j = k . p_j`` with the projected centre ``p_j = (A c_j)_{xy}``,
and ``|q| = |k|``: because the Gaussians are isotropic every factor is
separable in ``kx`` and ``ky``,

.. math::

    I(\\mathbf k) = e^{-2\\pi i\\,\\mathbf k\\cdot\\mathbf t/N}\\hat V(A^T[\\mathbf k,0])
        = \\sum_j E^y_j(k_y)\\, E^x_j(k_x),

a product of a ``(N, J)`` and a ``(J, N/2 + 1)`` complex matrix per image
(the Hermitian half of the spectrum, in ``scipy.fft.irfft2`` layout), exact
to float32 rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianMixture:
    """Isotropic Gaussians in pixel units about the box centre (module docstring).

    Attributes
    ----------
    centres : ndarray, shape (J, 3)
        ``(x, y, z)`` in pixels relative to voxel ``N // 2``.
    sigmas : ndarray, shape (J,)
        Standard deviations in pixels.
    amplitudes : ndarray, shape (J,)
        Peak densities (non-negative for a non-negative density).
    """

    centres: np.ndarray
    sigmas: np.ndarray
    amplitudes: np.ndarray

    def __post_init__(self):
        c, s, a = (np.asarray(v, dtype=np.float64) for v in (self.centres, self.sigmas, self.amplitudes))
        if c.ndim != 2 or c.shape[1] != 3 or s.shape != (c.shape[0],) or a.shape != s.shape:
            raise ValueError(f"GaussianMixture: centres (J, 3), sigmas (J,), amplitudes (J,); got "
                             f"{c.shape}, {s.shape}, {a.shape}")
        if not (np.isfinite(c).all() and np.isfinite(a).all() and (s > 0).all()):
            raise ValueError("GaussianMixture: non-finite centre/amplitude or non-positive sigma")
        object.__setattr__(self, "centres", c)
        object.__setattr__(self, "sigmas", s)
        object.__setattr__(self, "amplitudes", a)

    @property
    def size(self) -> int:
        return int(self.sigmas.shape[0])

    def scaled(self, factor: float) -> "GaussianMixture":
        return GaussianMixture(self.centres, self.sigmas, self.amplitudes * float(factor))

    def masses(self, n: int) -> np.ndarray:
        """``a_j (2 pi)^{3/2} s_j^3 / N``: each component's ``Vhat(0)``."""
        return self.amplitudes * (2 * np.pi) ** 1.5 * self.sigmas**3 / n

    def density(self, n: int, chunk: int = 64) -> np.ndarray:
        """``f`` sampled on the (n, n, n) grid, float32 indexed ``[z, y, x]``.

        Separable per component: ``sum_j (a_j g_z g_y) (x) g_x`` is one
        ``(N^2, J) @ (J, N)`` product per chunk of components.
        """
        r = np.arange(n, dtype=np.float64) - n // 2
        out = np.zeros((n * n, n))
        for start in range(0, self.size, chunk):
            sl = slice(start, start + chunk)
            g = [np.exp(-(r[None, :] - self.centres[sl, i:i + 1]) ** 2 / (2 * self.sigmas[sl, None] ** 2))
                 for i in range(3)]                                          # x, y, z: (J, N)
            zy = (self.amplitudes[sl, None, None] * g[2][:, :, None] * g[1][:, None, :]).reshape(-1, n * n)
            out += zy.T @ g[0]
        return out.reshape(n, n, n).astype(np.float32)

    def fourier(self, q: np.ndarray, n: int) -> np.ndarray:
        """``Vhat(q)`` at frequencies ``q`` (..., 3) in index units, complex128 (module docstring)."""
        q = np.asarray(q, dtype=np.float64)
        q2 = (q**2).sum(-1)[..., None]
        phase = q @ self.centres.T                                           # (..., J)
        terms = self.masses(n) * np.exp(-2 * np.pi**2 * self.sigmas**2 * q2 / n**2)
        return (terms * np.exp(-2j * np.pi * phase / n)).sum(-1)

    def slices(self, rotations: np.ndarray, k: np.ndarray, n: int, shifts: np.ndarray | None = None
               ) -> np.ndarray:
        """``exp(-2 pi i k.t / N) Vhat(A^T [k, 0])`` at integer or real ``k`` (T, 2); shape (B, T)."""
        rotations = np.asarray(rotations, dtype=np.float64)
        q = k[None, :, 0:1] * rotations[:, None, 0, :] + k[None, :, 1:2] * rotations[:, None, 1, :]
        out = self.fourier(q, n)
        if shifts is not None:
            out = out * np.exp(-2j * np.pi * (np.asarray(shifts, float) @ np.asarray(k, float).T) / n)
        return out

    def image_spectra(self, rotations: np.ndarray, shifts: np.ndarray, n: int) -> np.ndarray:
        """Exact image spectra in ``irfft2`` layout, complex64 (B, N, N/2 + 1).

        Entry ``[b, ky mod N, kx]`` is ``I_b(k)`` for the image whose pixel
        ``p`` holds the projection at ``p - c`` (so ``irfft2(.) * N`` is the
        centred image, no fftshift): the phase uses the absolute position
        ``c + p_j + t``.  float32 phases: the phase error is below ``1e-5``
        cycles at N = 128.
        """
        rotations = np.asarray(rotations, dtype=np.float64)
        b, half = rotations.shape[0], n // 2 + 1
        pos = np.einsum("bij,kj->bki", rotations[:, :2, :], self.centres)    # (B, J, 2): (A c_j)_xy
        pos += n // 2 + np.asarray(shifts, dtype=np.float64)[:, None, :]
        ky = np.fft.fftfreq(n, 1.0 / n).astype(np.float32)
        kx = np.arange(half, dtype=np.float32)
        s2 = (2 * np.pi**2 * self.sigmas**2 / n**2).astype(np.float32)[:, None]
        env_y = np.exp(-s2 * ky**2)                                          # (J, N)
        env_x = np.exp(-s2 * kx**2) * self.masses(n).astype(np.float32)[:, None]
        pos32 = (pos * (-2 * np.pi / n)).astype(np.float32)
        ey = _cis(pos32[:, :, 1, None] * ky, env_y)                          # (B, J, N)
        ex = _cis(pos32[:, :, 0, None] * kx, env_x)                          # (B, J, N/2+1)
        return np.matmul(ey.transpose(0, 2, 1), ex).reshape(b, n, half)


def _cis(phase: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """``envelope * exp(i phase)`` in complex64 (float32 sin/cos are vectorised; complex exp is not)."""
    out = np.empty(phase.shape, dtype=np.complex64)
    out.real = np.cos(phase) * envelope
    out.imag = np.sin(phase) * envelope
    return out
