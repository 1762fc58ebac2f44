"""The coarse rotation search of the alignment (:func:`bench.score.metrics.align`, step 2) in one pass.

For every grid rotation ``A`` the score is the mean over band shells of the
correlation of centred Fourier amplitudes,

.. math::

    c(A) = \\frac{1}{S}\\sum_{s=1}^{S}
      \\frac{\\sum_{k \\in s} (a_k - \\bar a_s)\\, r_k}
           {\\sqrt{\\sum_{k \\in s} (a_k - \\bar a_s)^2 \\sum_{k \\in s} r_k^2 + 10^{-300}}},
    \\qquad a_k = |Y|(4 A^T k + c)\\ \\text{(trilinear)},

with ``r`` the reference's centred amplitudes.  The numpy form sampled all
``n_grid x n_points`` amplitudes into memory (21,115 rotations x 551 points
at paper scale: 280 MB of coordinates, 6 of the 11.5 s of one alignment at
load 10); here each rotation's shell sums are accumulated as its points are
interpolated, in parallel over rotations, and
``sum (a - mean)^2 = sum a^2 - mean sum a``, ``sum (a - mean) r = sum a r - mean sum r``.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _scores(amp, grid, k, shells, n_shells, ref_c, scale, centre, out):
    n_grid, n_points = grid.shape[0], k.shape[0]
    count = np.zeros(n_shells + 1)
    r_sum = np.zeros(n_shells + 1)
    r_sq = np.zeros(n_shells + 1)
    for p in range(n_points):
        count[shells[p]] += 1.0
        r_sum[shells[p]] += ref_c[p]
        r_sq[shells[p]] += ref_c[p] * ref_c[p]
    for g in numba.prange(n_grid):
        a_sum = np.zeros(n_shells + 1)
        a_sq = np.zeros(n_shells + 1)
        a_r = np.zeros(n_shells + 1)
        m = grid[g]
        for p in range(n_points):
            c0 = (m[0, 0] * k[p, 0] + m[1, 0] * k[p, 1] + m[2, 0] * k[p, 2]) * scale + centre
            c1 = (m[0, 1] * k[p, 0] + m[1, 1] * k[p, 1] + m[2, 1] * k[p, 2]) * scale + centre
            c2 = (m[0, 2] * k[p, 0] + m[1, 2] * k[p, 1] + m[2, 2] * k[p, 2]) * scale + centre
            i0, i1, i2 = int(np.floor(c0)), int(np.floor(c1)), int(np.floor(c2))
            f0, f1, f2 = c0 - i0, c1 - i1, c2 - i2
            v = ((1 - f0) * ((1 - f1) * ((1 - f2) * amp[i0, i1, i2] + f2 * amp[i0, i1, i2 + 1])
                             + f1 * ((1 - f2) * amp[i0, i1 + 1, i2] + f2 * amp[i0, i1 + 1, i2 + 1]))
                 + f0 * ((1 - f1) * ((1 - f2) * amp[i0 + 1, i1, i2] + f2 * amp[i0 + 1, i1, i2 + 1])
                         + f1 * ((1 - f2) * amp[i0 + 1, i1 + 1, i2] + f2 * amp[i0 + 1, i1 + 1, i2 + 1])))
            s = shells[p]
            a_sum[s] += v
            a_sq[s] += v * v
            a_r[s] += v * ref_c[p]
        total = 0.0
        for s in range(1, n_shells + 1):
            mean = a_sum[s] / count[s]
            num = a_r[s] - mean * r_sum[s]
            var = a_sq[s] - mean * a_sum[s]
            total += num / np.sqrt(var * r_sq[s] + 1e-300)
        out[g] = total / n_shells


def coarse_scores(amp: np.ndarray, grid: np.ndarray, k: np.ndarray, shells: np.ndarray, n_shells: int,
                  ref_centred: np.ndarray, oversampling: int, centre: float) -> np.ndarray:
    """``c(A)`` for every rotation of ``grid`` (n, 3, 3): amplitudes ``amp`` of the oversampled spectrum,
    band points ``k`` (P, 3) with shell indices ``shells`` (1..n_shells), reference centred amplitudes."""
    coords_max = np.linalg.norm(k, axis=1).max() * oversampling     # |(A^T k)_i| <= |k|
    if centre - coords_max < 0 or centre + coords_max + 1 >= min(amp.shape):
        raise ValueError("coarse_scores: band points leave the oversampled spectrum")
    out = np.empty(grid.shape[0])
    _scores(np.ascontiguousarray(amp, dtype=np.float64), np.ascontiguousarray(grid, dtype=np.float64),
            np.ascontiguousarray(k, dtype=np.float64), np.ascontiguousarray(shells, dtype=np.int64), int(n_shells),
            np.ascontiguousarray(ref_centred, dtype=np.float64), float(oversampling), float(centre), out)
    return out


def coarse_scores_xp(xp, ndimage, amp, grid: np.ndarray, k: np.ndarray, shells: np.ndarray, n_shells: int,
                     ref_centred, oversampling: int, centre: float, block: int = 1 << 22):
    """:func:`coarse_scores` against an array module (``xp``, ``ndimage``: numpy + scipy.ndimage or
    cupy + cupyx.scipy.ndimage), for devices: rotations in blocks of about ``block`` sampled points,
    each block's amplitudes sampled at once (trilinear), the shell sums as products with the
    (P, S) shell indicator.  Returns a device array (n_grid,)."""
    k_d = xp.asarray(k, dtype=np.float64)
    onehot = xp.asarray((np.asarray(shells)[:, None] == np.arange(1, n_shells + 1)[None, :]).astype(np.float64))
    ref_c = xp.asarray(ref_centred, dtype=np.float64)
    count, r_sum, r_sq = onehot.sum(0), ref_c @ onehot, (ref_c * ref_c) @ onehot
    grid_d = xp.asarray(grid, dtype=np.float64)
    out = xp.empty(grid.shape[0])
    rows = max(1, block // max(1, k.shape[0]))
    for lo in range(0, grid.shape[0], rows):
        coords = xp.einsum("gji,pj->gpi", grid_d[lo:lo + rows], k_d) * oversampling + centre
        a = ndimage.map_coordinates(amp, coords.reshape(-1, 3).T, order=1, mode="nearest").reshape(coords.shape[:2])
        a_sum, a_sq, a_r = a @ onehot, (a * a) @ onehot, (a * ref_c) @ onehot
        mean = a_sum / count
        out[lo:lo + rows] = ((a_r - mean * r_sum) / xp.sqrt((a_sq - mean * a_sum) * r_sq + 1e-300)).mean(1)
    return out
