"""The Fourier-volume model's Hessian assembled exactly as a 27-point stencil, and its spectrum per ball.

For the free Fourier volume (:mod:`problems.model.fourier_volume`) the
Hessian of the training objective

.. math:: H = \\frac{\\lambda}{K} I + \\frac{1}{\\sigma^2 K} \\sum_{i=1}^{K} S_i^T \\mathrm{diag}(C_i^2) S_i

is real, symmetric, independent of ``v`` and of the shifts, and couples a
voxel only with its 26 neighbours (trilinear) or with nothing (nearest
neighbour).  :func:`assemble_hessian` adds it up once over all images
(:func:`problems.model.slice_kernels.assemble`: each sample adds
``C^2 W_a W_b`` to the pairs of its 8 corners; float32 per chunk of
images, float64 in total).  A product with the stored stencil then costs
``27 n^3`` multiply-adds instead of a pass over ``K`` images (at 128 px:
~0.1 s against ~30 s), which is what makes the condition number per radius
and a tightly converged reference optimum affordable at paper scale.

:meth:`AssembledHessian.ball_operator` restricts ``H`` to the voxels of a
ball ``|xi| <= r`` (a principal submatrix, as the condition number per
radius of Toader et al. is defined on the diagonal over the ball), and
:func:`extreme_eigenvalues` finds its extreme eigenvalues by LOBPCG with the
Jacobi preconditioner, with each Ritz pair's residual ``|H u - theta u|``:
some eigenvalue lies within it of ``theta``.
"""
from __future__ import annotations

import warnings

import numba
import numpy as np
from scipy.sparse.linalg import LinearOperator, lobpcg

from .slice_kernels import assemble, stencil_matvec


class AssembledHessian:
    """``H = lam I + stencil`` on the ``n^3`` grid (``stencil`` (n^3, 27) float64, :func:`assemble_hessian`)."""

    def __init__(self, stencil: np.ndarray, n: int, lam: float = 0.0):
        self.stencil, self.n, self.lam = stencil, int(n), float(lam)

    def matvec(self, u: np.ndarray) -> np.ndarray:
        """``H u`` for a real or complex ``u`` of ``n^3`` values (any shape; float64/complex128 out)."""
        u = np.ascontiguousarray(u).reshape(-1)
        u = u.astype(np.result_type(u.dtype, np.float64), copy=False)
        out = np.empty_like(u)
        stencil_matvec(self.stencil, u, self.n, out)
        if self.lam:
            out += self.lam * u
        return out

    def diagonal(self) -> np.ndarray:
        """``diag(H)`` (n^3,)."""
        return self.stencil[:, 13] + self.lam

    def radius(self) -> np.ndarray:
        """``|xi|`` of every voxel (n^3,), centre ``n // 2``."""
        g = np.arange(self.n) - self.n // 2
        return np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2).reshape(-1)

    def ball_operator(self, radius: float) -> tuple[LinearOperator, np.ndarray]:
        """``H`` restricted to the ball ``|xi| <= radius`` (real LinearOperator) and its diagonal.

        The stencil is cropped to the ball's cube plus one voxel and its rows
        outside the ball are zeroed, so a product costs the ball's size, not
        the grid's.
        """
        n, c = self.n, self.n // 2
        m = min(int(np.floor(radius)) + 1, c - 1 if n % 2 == 0 else c)
        sl = slice(c - m, c + m + 1)
        crop = self.stencil.reshape(n, n, n, 27)[sl, sl, sl].reshape(-1, 27).copy()
        g = np.arange(-m, m + 1)
        inside = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2 <= radius**2).reshape(-1)
        crop[~inside] = 0.0
        idx = np.flatnonzero(inside)
        side = 2 * m + 1
        full = np.zeros(side**3)
        out = np.empty(side**3)

        def mv(u):
            full[idx] = np.ravel(u)
            stencil_matvec(crop, full, side, out)
            return out[idx] + self.lam * np.ravel(u)

        op = LinearOperator((idx.size, idx.size), matvec=mv, dtype=np.float64)
        return op, crop[idx, 13] + self.lam


def assemble_hessian(lik, ctf: np.ndarray, rotations: np.ndarray, use_ctf: bool = True, lam: float = 0.0,
                     chunk: int = 5000) -> AssembledHessian:
    """The Hessian of the mean NLL over all ``(ctf, rotations)`` images plus ``lam I`` (module docstring).

    ``lik``: a :class:`~problems.model.fourier_volume.FourierVolumeLikelihood`
    (its grid, disc, interpolation, sigma and precision).
    """
    n, k_total = lik.n, rotations.shape[0]
    threads = numba.get_num_threads()
    total = np.zeros((n**3, 27))
    partial = np.empty((threads, n**3, 27), dtype=lik.dtype)
    for s in range(0, k_total, chunk):
        rot = np.ascontiguousarray(rotations[s:s + chunk], dtype=lik.dtype)
        c = np.ascontiguousarray(ctf[s:s + chunk], dtype=lik.dtype)
        chunks = min(threads, rot.shape[0])
        partial[:chunks] = 0.0
        assemble(n, rot, lik._kxy, c, bool(use_ctf), 1.0 / (lik.sigma**2 * k_total), lik.interpolation == "nn",
                 partial[:chunks])
        for ch in range(chunks):
            total += partial[ch]
    return AssembledHessian(total, n, lam)


def extreme_eigenvalues(op: LinearOperator, diag: np.ndarray, tol: float = 1e-4, maxiter: int = 300,
                        seed: int = 0) -> dict:
    """``lambda_max``, ``lambda_min`` of a symmetric ``op`` by LOBPCG (Jacobi preconditioner), with residuals.

    Returns the two Ritz values, their residual norms ``|H u - theta u|``
    (an eigenvalue lies within each of its Ritz value) and the products used.
    """
    count = [0]

    def block(x):                           # lobpcg passes (N, k) blocks
        x = np.asarray(x).reshape(op.shape[0], -1)
        count[0] += x.shape[1]
        return np.stack([op.matvec(x[:, j]) for j in range(x.shape[1])], axis=1)

    def prec(x):
        x = np.asarray(x).reshape(op.shape[0], -1)
        return x / diag[:, None]

    rng = np.random.default_rng(seed)
    out = {}
    for largest, key in ((True, "max"), (False, "min")):
        x0 = rng.standard_normal((op.shape[0], 2))
        with warnings.catch_warnings():          # non-convergence is reported by the residuals instead
            warnings.simplefilter("ignore", UserWarning)
            w, v = lobpcg(block, x0, M=prec, largest=largest, tol=tol, maxiter=maxiter)
        j = int(np.argmax(w) if largest else np.argmin(w))
        u = v[:, j] / np.linalg.norm(v[:, j])
        out[f"lambda_{key}"] = float(w[j])
        out[f"residual_{key}"] = float(np.linalg.norm(op.matvec(u) - w[j] * u))
    out["products"] = count[0]
    return out
