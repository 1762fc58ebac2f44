"""Condition number against radius, Toader, Brubaker & Lederman's Fig. 3 setting.

Their model (reference repo ``simplecryoem``): the unknown is the 3D DFT ``v``
on the ``nx^3`` grid, image ``i`` is the nearest-neighbour central slice at
its pose ``A_i`` (times its CTF ``C_i``), masked to the disc ``|k| <= R``,
and the loss ``f(v) = (1/N) sum_i 1/2 (lambda ||v||^2 + ||C_i S_i v - y_i||^2)``.
A nearest-neighbour slice is a 0/1 selection, so the Hessian is diagonal and
exact by counting:

.. math:: H(\\xi) = \\lambda + \\frac{1}{N} \\sum_i \\sum_{k:\\ \\mathrm{round}(A_i^T [k, 0]) = \\xi} C_i(k)^2 ,

and ``kappa(r) = max H / min H`` over the voxels of the ball ``|xi| <= r``
(:func:`nn_diagonal`, :func:`kappa_by_radius`).  Without CTF ``H(0) = 1 + lambda``
(every slice passes through the origin).  The lower bound
(:func:`kappa_lower_bound`, their ``compute_cond_lower_bound``): the largest
entry is ``>= N + lambda`` (unnormalised), the mean over the ball is
``N p + lambda`` with ``p`` = (grid points of the disc of radius ``R``) /
(grid points of the ball of radius ``R``), so

.. math:: \\kappa \\ge \\frac{N + \\lambda}{N p + \\lambda} \\approx \\frac{4R}{3},

for any set of directions (nearest neighbour, no CTF).  Our oracle's slices
are trilinear on the 2x oversampled DFT of a real volume: there ``H`` is
not diagonal and its extreme eigenvalues come from Lanczos
(:func:`problems.model.spectra.extreme_eigenvalues`, see :mod:`bench.experiments.conditioning`).

The half-plane band of a problem stands for the full disc: ``k`` and ``-k``
land on ``xi`` and ``-xi`` with the same ``C^2`` (the CTF is even), DC once.
"""
from __future__ import annotations

import numba
import numpy as np
from scipy.spatial.transform import Rotation

LAMBDA = 1e-8                      # their regularisation


def lattice_count(radius: float, dim: int) -> int:
    """Integer points ``z`` in ``Z^dim`` with ``|z| <= radius``."""
    r = int(np.floor(radius))
    axis = np.arange(-r, r + 1) ** 2
    sq = axis
    for _ in range(dim - 1):
        sq = np.add.outer(sq, axis)
    return int(np.count_nonzero(sq <= radius * radius))


def kappa_lower_bound(radius: float, n_images: float, lam: float = LAMBDA) -> float:
    """``(N + lambda) / (N p + lambda)``, ``p`` = disc points / ball points of radius ``radius``."""
    p = lattice_count(radius, 2) / lattice_count(radius, 3)
    return (n_images + lam) / (n_images * p + lam)


def disc_half_plane(radius: float) -> np.ndarray:
    """Integer ``(kx, ky)`` of the half disc ``|k| <= radius`` (``ky > 0``, or ``ky = 0, kx >= 0``)."""
    r = int(np.floor(radius))
    ky, kx = np.mgrid[0:r + 1, -r:r + 1]
    keep = (kx**2 + ky**2 <= radius * radius) & ((ky > 0) | (kx >= 0))
    return np.stack([kx[keep], ky[keep]], axis=1).astype(np.float64)


@numba.njit(cache=True, parallel=False)
def _count(rotations, k, weights, nx, out):
    c = nx // 2
    for i in range(rotations.shape[0]):
        a = rotations[i]
        for t in range(k.shape[0]):
            w = weights[i, t] if weights.shape[0] > 1 else weights[0, t]
            kx, ky = k[t, 0], k[t, 1]
            qx = kx * a[0, 0] + ky * a[1, 0]
            qy = kx * a[0, 1] + ky * a[1, 1]
            qz = kx * a[0, 2] + ky * a[1, 2]
            ix, iy, iz = int(np.rint(qx)), int(np.rint(qy)), int(np.rint(qz))
            out[c + iz, c + iy, c + ix] += w
            if kx != 0.0 or ky != 0.0:                      # the Hermitian partner -k
                out[c - iz, c - iy, c - ix] += w


def nn_diagonal(rotations: np.ndarray, k_half: np.ndarray, ctf: np.ndarray | None, nx: int,
                lam: float = LAMBDA) -> np.ndarray:
    """``H(xi)`` on the centred ``nx^3`` grid (module docstring); ``ctf`` (N, D) or ``None``.

    ``rotations`` are RELION matrices ``A_i`` (slice point ``A^T [k, 0]``);
    ``k_half`` the half-plane band ``(D, 2)`` in pixels.
    """
    n = rotations.shape[0]
    weights = np.ones((1, k_half.shape[0])) if ctf is None else np.asarray(ctf, np.float64) ** 2
    counts = np.zeros((nx, nx, nx))
    _count(np.ascontiguousarray(rotations, np.float64), np.ascontiguousarray(k_half, np.float64),
           np.ascontiguousarray(weights), nx, counts)
    return lam + counts / n


def kappa_by_radius(diag: np.ndarray, radii) -> np.ndarray:
    """``max H / min H`` over the ball ``|xi| <= r`` for each ``r`` (diag centred at ``nx // 2``)."""
    nx = diag.shape[0]
    g = np.arange(nx) - nx // 2
    rad = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2).ravel()
    order = np.argsort(rad, kind="stable")
    values, rad = diag.ravel()[order], rad[order]
    hi, lo = np.maximum.accumulate(values), np.minimum.accumulate(values)
    last = np.searchsorted(rad, np.asarray(radii, dtype=np.float64) + 1e-9, side="right") - 1
    return hi[last] / lo[last]


def problem_kappa(problem, lam: float = LAMBDA) -> dict:
    """(a): ``kappa(r)``, ``r = 1..floor(r_max)``, on the problem's training poses, with and without CTF."""
    _, ctf, rotations = problem.split_arrays("train")
    r_max = problem.band.r_max
    k = problem.band.k.astype(np.float64)
    nx = 2 * int(np.ceil(r_max)) + 3
    radii = np.arange(1, int(np.floor(r_max)) + 1)
    out = {"radius": radii.tolist(), "n_images": int(rotations.shape[0]),
           "bound": [kappa_lower_bound(r, rotations.shape[0], lam) for r in radii]}
    diags = {}
    for name, c in (("no_ctf", None), ("ctf", ctf)):
        diags[name] = nn_diagonal(rotations, k, c, nx, lam)
        out[name] = kappa_by_radius(diags[name], radii).tolist()
    return out, diags


def uniform_kappa(sizes=(16, 32, 64, 128, 192, 304), n_images: int = 10_000, draws: int = 10,
                  seed: int = 0, lam: float = LAMBDA, progress: bool = False) -> list[dict]:
    """(b): uniform poses, ``R = nx/2 - 1``, ``draws`` draws: min, max of ``kappa(R)`` and the bound."""
    rows = []
    for nx in sizes:
        radius = nx / 2 - 1
        k = disc_half_plane(radius)
        kappas = []
        for d in range(draws):
            rng = np.random.default_rng([seed, nx, d])
            rot = Rotation.random(n_images, random_state=rng).as_matrix()
            kappas.append(float(kappa_by_radius(nn_diagonal(rot, k, None, nx + 1, lam), [radius])[0]))
        rows.append({"nx": nx, "radius": radius, "n_images": n_images, "draws": draws,
                     "kappa_min": min(kappas), "kappa_max": max(kappas),
                     "bound": kappa_lower_bound(radius, n_images, lam)})
        if progress:
            print(f"  uniform poses nx={nx}: kappa {min(kappas):.4g}..{max(kappas):.4g}, "
                  f"bound {rows[-1]['bound']:.4g}")
    return rows
