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
to float32 rounding (relative ~1e-6).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
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

    def fourier(self, q: np.ndarray, n: int, block: int = 1 << 21) -> np.ndarray:
        """``Vhat(q)`` at frequencies ``q`` (..., 3) in index units, complex128 (module docstring).

        The (points x J) terms are formed for about ``block`` of them at a
        time (32 MB of complex128 each; all at once took 5.7 GB for 200
        slices of the realistic paper band); each point's sum is the same,
        to rounding.
        """
        q = np.asarray(q, dtype=np.float64)
        flat = q.reshape(-1, 3)
        out = np.empty(flat.shape[0], dtype=np.complex128)
        masses = self.masses(n)
        rows = max(1, block // max(1, self.size))
        for lo in range(0, flat.shape[0], rows):
            qb = flat[lo:lo + rows]
            q2 = (qb**2).sum(-1)[:, None]
            phase = qb @ self.centres.T                                      # (rows, J)
            terms = masses * np.exp(-2 * np.pi**2 * self.sigmas**2 * q2 / n**2)
            out[lo:lo + rows] = (terms * np.exp(-2j * np.pi * phase / n)).sum(-1)
        return out.reshape(q.shape[:-1])

    def slices(self, rotations: np.ndarray, k: np.ndarray, n: int, shifts: np.ndarray | None = None
               ) -> np.ndarray:
        """``exp(-2 pi i k.t / N) Vhat(A^T [k, 0])`` at integer or real ``k`` (T, 2); shape (B, T)."""
        rotations = np.asarray(rotations, dtype=np.float64)
        q = k[None, :, 0:1] * rotations[:, None, 0, :] + k[None, :, 1:2] * rotations[:, None, 1, :]
        out = self.fourier(q, n)
        if shifts is not None:
            out = out * np.exp(-2j * np.pi * (np.asarray(shifts, float) @ np.asarray(k, float).T) / n)
        return out

    def image_spectra(self, rotations: np.ndarray, shifts: np.ndarray, n: int, batch: int = 16
                      ) -> np.ndarray:
        """Exact image spectra in ``irfft2`` layout, complex64 (B, N, N/2 + 1).

        Entry ``[b, ky mod N, kx]`` is ``I_b(k)`` for the image whose pixel
        ``p`` holds the projection at ``p - c`` (so ``irfft2(.) * N`` is the
        centred image, no fftshift): the phase uses the absolute position
        ``c + p_j + t``.

        Speed (the simulator's hot loop): for ``k >= 0`` the phasors
        ``exp(i theta k)`` are a float64 recurrence (one complex product per
        entry, relative drift ~1e-14), written by a numba kernel straight
        into the layouts of real float32 matrix products (stacked complex64
        products ran 3x slower than sgemm here).  Only ``ky >= 0`` is
        multiplied: ``E^y(-ky) = conj E^y(ky)``, so with ``E^y = C_y + i S_y``
        and ``E^x = C_x + i S_x`` the four products ``C_y C_x, S_y S_x,
        C_y S_x, S_y C_x`` give both half-planes,
        ``I(+-ky, kx) = (C_y C_x -+ S_y S_x) + i (C_y S_x +- S_y C_x)``.

        Memory: the four factor matrices take ``24 J (N/2 + 1)`` bytes per
        image (5 MB at 128 px and J = 3,369), so they are built ``batch``
        images at a time into buffers reused across batches (each image's
        products are its own matrix products: ``batch`` does not change
        the result).
        """
        theta_y, theta_x, env, env_x = self._phases(rotations, shifts, n)
        b, half, j = theta_y.shape[0], n // 2 + 1, self.size
        env_t = np.ascontiguousarray(env.T)
        m = max(1, min(int(batch), b))
        cy, sy = np.empty((2, m, half, j), dtype=np.float32)
        rc, rs = np.empty((2, m, j, 2 * half), dtype=np.float32)
        p_c, p_s = np.empty((2, m, half, 2 * half), dtype=np.float32)
        spec = np.empty((b, n, half), dtype=np.complex64)
        out = spec.view(np.float32).reshape(b, n, half, 2)
        for lo in range(0, b, m):
            k = min(m, b - lo)
            _fill_factors(theta_y[lo:lo + k], theta_x[lo:lo + k], env_t, env_x, cy[:k], sy[:k], rc[:k], rs[:k])
            np.matmul(cy[:k], rc[:k], out=p_c[:k])                          # [C_y C_x, C_y S_x]
            np.matmul(sy[:k], rs[:k], out=p_s[:k])                          # [S_y S_x, S_y C_x]
            _assemble(p_c[:k], p_s[:k], out[lo:lo + k])
        return spec

    def image_spectra_xp(self, xp, rotations: np.ndarray, shifts: np.ndarray, n: int, batch: int = 16):
        """:meth:`image_spectra` against an array module (numpy, or cupy for a GPU): a device array.

        The same four products and half-plane assembly; the phasors
        ``exp(i theta k)`` are evaluated directly (float64 ``cos``, ``sin``)
        instead of by the numba recurrence, and the products are the device's,
        so the result equals :meth:`image_spectra` to float32 rounding.
        """
        theta_y, theta_x, env, env_x = self._phases(rotations, shifts, n)
        b, half, m = theta_y.shape[0], n // 2 + 1, n // 2
        k = xp.arange(half, dtype=np.float64)
        env, env_x = xp.asarray(env), xp.asarray(env_x)
        r = np.arange(n)
        src = xp.asarray(np.where(r < m, r, n - r))                       # row ky of both half-planes
        sign = xp.asarray(np.where(r < m, 1.0, -1.0).astype(np.float32))[:, None]
        spec = xp.empty((b, n, half), dtype=np.complex64)
        for lo in range(0, b, max(1, int(batch))):
            ty = xp.asarray(theta_y[lo:lo + batch])[:, :, None] * k          # (b, J, H)
            tx = xp.asarray(theta_x[lo:lo + batch])[:, :, None] * k
            cy = xp.ascontiguousarray((env * xp.cos(ty)).astype(np.float32).transpose(0, 2, 1))
            sy = xp.ascontiguousarray((env * xp.sin(ty)).astype(np.float32).transpose(0, 2, 1))
            cx, sx = (env_x * xp.cos(tx)).astype(np.float32), (env_x * xp.sin(tx)).astype(np.float32)
            p_c = xp.matmul(cy, xp.concatenate([cx, sx], axis=2))[:, src]    # [C_y C_x, C_y S_x]
            p_s = xp.matmul(sy, xp.concatenate([sx, cx], axis=2))[:, src]    # [S_y S_x, S_y C_x]
            spec[lo:lo + batch] = (p_c[..., :half] - sign * p_s[..., :half]) \
                + 1j * (p_c[..., half:] + sign * p_s[..., half:])
        return spec

    def _phases(self, rotations: np.ndarray, shifts: np.ndarray, n: int):
        """``theta_y, theta_x`` (B, J) and the envelopes ``env``, ``env_x`` (J, N/2 + 1) of :meth:`image_spectra`."""
        if n % 2:       # the half-plane assembly pairs row ky with n - ky, and the Nyquist row with itself
            raise ValueError(f"image_spectra: the box size must be even, got {n}")
        rotations = np.asarray(rotations, dtype=np.float64)
        half = n // 2 + 1
        pos = np.einsum("bij,kj->bki", rotations[:, :2, :], self.centres)    # (B, J, 2): (A c_j)_xy
        pos += n // 2 + np.asarray(shifts, dtype=np.float64)[:, None, :]
        theta = pos * (-2 * np.pi / n)
        s2 = 2 * np.pi**2 * self.sigmas**2 / n**2
        env = np.exp(-s2[:, None] * np.arange(half) ** 2)                    # (J, H): ky and kx alike
        env_x = env * self.masses(n)[:, None]
        # Flush what float32 would hold as denormals (they slowed the products 10x): both factors
        # are cut 1e-12 below their largest entry, far below float32 rounding of the sum.
        env[env < 1e-12] = 0.0
        env_x[np.abs(env_x) < 1e-12 * np.abs(env_x).max()] = 0.0
        return np.ascontiguousarray(theta[:, :, 1]), np.ascontiguousarray(theta[:, :, 0]), env, env_x


@numba.njit(cache=True, nogil=True)
def _fill_factors(theta_y, theta_x, env_yt, env_x, cy, sy, rc, rs):
    """``cy[b, k, j] + i sy[b, k, j] = env_yt[k, j] exp(i theta_y[b, j] k)``; ``rc[b, j] = [C_x, S_x]``,
    ``rs[b, j] = [S_x, C_x]`` with ``C_x + i S_x = env_x[j, k] exp(i theta_x[b, j] k)``.

    Loops run along each output's contiguous axis (``j`` for ``cy``, ``k``
    for ``rc``): the same recurrences, written in cache order."""
    nb, nj = theta_y.shape
    h = env_x.shape[1]
    z = np.empty(nj, dtype=np.complex128)
    step = np.empty(nj, dtype=np.complex128)
    for b in range(nb):
        for j in range(nj):
            step[j] = complex(np.cos(theta_y[b, j]), np.sin(theta_y[b, j]))
            z[j] = complex(1.0, 0.0)
        for k in range(h):
            for j in range(nj):
                cy[b, k, j] = env_yt[k, j] * z[j].real
                sy[b, k, j] = env_yt[k, j] * z[j].imag
                z[j] *= step[j]
        for j in range(nj):
            st = complex(np.cos(theta_x[b, j]), np.sin(theta_x[b, j]))
            w = complex(1.0, 0.0)
            for k in range(h):
                c, s = env_x[j, k] * w.real, env_x[j, k] * w.imag
                rc[b, j, k], rc[b, j, h + k] = c, s
                rs[b, j, k], rs[b, j, h + k] = s, c
                w *= st


@numba.njit(cache=True, nogil=True)
def _assemble(p_c, p_s, out):
    """Both ky half-planes from the four products (see GaussianMixture.image_spectra)."""
    nb, n, h = out.shape[0], out.shape[1], out.shape[2]
    m = n // 2
    for b in range(nb):
        for r in range(n):
            src = r if r < m else n - r
            sign = 1.0 if r < m else -1.0
            for k in range(h):
                cc, cs = p_c[b, src, k], p_c[b, src, h + k]
                ss, sc = p_s[b, src, k], p_s[b, src, h + k]
                out[b, r, k, 0] = cc - sign * ss
                out[b, r, k, 1] = cs + sign * sc
