"""Slicing: trilinear interpolation of the oversampled spectrum, and its adjoint.

``S = T(cube)``: the value of a slice at band coefficient ``t`` of pose ``j``
is the trilinear interpolation of the 2x oversampled cube at ``2 q_jt`` (cube
index units), ``q_jt = A_j^T [k_t, 0]``.  ``T`` is a fixed real linear map, so
the adjoint ``T^T`` scatters slice gradients back with the same weights.

Why numba: the gather is a sparse product that scipy.sparse runs on one thread
and that dominated a prototype step; here both directions are computed on the
fly in parallel (the scatter into one private cube per thread, then summed).
numba's OpenMP layer busy-waits and fights OpenBLAS for the cores, so the
``workqueue`` layer is selected unless the user chose one.
"""
from __future__ import annotations

import os

import numba
import numpy as np

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@numba.njit(inline="always", fastmath=True)
def _cell(coords, j, t, offset, k):
    """Flat index of the lower corner and fractional position of sample ``(j, t)``.

    Coordinates plus offset are never negative (checked in Slicer), so
    truncation toward zero is the floor; it is half the cost of np.floor here.
    Fractions stay in the coordinates' dtype: a float64 ``1.0 - f`` would turn
    every complex64 product into complex128 (1.6x slower gathers).
    """
    px = coords[j, t, 0] + offset
    py = coords[j, t, 1] + offset
    pz = coords[j, t, 2] + offset
    ix, iy, iz = np.int32(px), np.int32(py), np.int32(pz)
    real = coords.dtype.type
    return (iz * k + iy) * k + ix, px - real(ix), py - real(iy), pz - real(iz)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _gather(cube, offset, coords, rows, out):
    """``out[rows[j], t]`` = trilinear value of ``cube`` at ``coords[j, t] + offset``."""
    n_pose, n_coef = coords.shape[0], coords.shape[1]
    k = cube.shape[0]
    kk = k * k
    flat = cube.reshape(-1)
    one = coords.dtype.type(1.0)
    for j in numba.prange(n_pose):
        for t in range(n_coef):
            c, fx, fy, fz = _cell(coords, j, t, offset, k)
            gx, gy, gz = one - fx, one - fy, one - fz
            a0 = gx * flat[c] + fx * flat[c + 1]
            a1 = gx * flat[c + k] + fx * flat[c + k + 1]
            a2 = gx * flat[c + kk] + fx * flat[c + kk + 1]
            a3 = gx * flat[c + kk + k] + fx * flat[c + kk + k + 1]
            out[rows[j], t] = gz * (gy * a0 + fy * a1) + fz * (gy * a2 + fy * a3)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _scatter(values, offset, coords, rows, partial):
    """Adjoint of :func:`_gather`: ``values[rows[j], t]`` spread with the trilinear
    weights into one private cube per chunk of poses (``partial``)."""
    n_chunk = partial.shape[0]
    n_pose, n_coef = coords.shape[0], coords.shape[1]
    k = partial.shape[1]
    kk = k * k
    one = coords.dtype.type(1.0)
    for ch in numba.prange(n_chunk):
        acc = partial[ch].reshape(-1)
        for j in range(ch * n_pose // n_chunk, (ch + 1) * n_pose // n_chunk):
            for t in range(n_coef):
                v = values[rows[j], t]
                c, fx, fy, fz = _cell(coords, j, t, offset, k)
                gx, gy, gz = one - fx, one - fy, one - fz
                v0, v1 = gz * v, fz * v
                v00, v01, v10, v11 = gy * v0, fy * v0, gy * v1, fy * v1
                acc[c] += gx * v00
                acc[c + 1] += fx * v00
                acc[c + k] += gx * v01
                acc[c + k + 1] += fx * v01
                acc[c + kk] += gx * v10
                acc[c + kk + 1] += fx * v10
                acc[c + kk + k] += gx * v11
                acc[c + kk + k + 1] += fx * v11


def slice_coordinates(rotations: np.ndarray, band_k: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Cube coordinates ``2 A^T [k, 0]`` (x, y, z), shape (n_pose, T, 3)."""
    k = np.asarray(band_k, dtype=np.float64)
    q = k[None, :, 0:1] * rotations[:, None, 0, :] + k[None, :, 1:2] * rotations[:, None, 1, :]
    return np.ascontiguousarray((2.0 * q).astype(dtype))


@numba.njit(cache=True)
def _copy_derived(slices, derived, parent, perm, conj):
    for r in range(derived.size):
        dst, src = derived[r], parent[r]
        for t in range(perm.shape[1]):
            v = slices[src, perm[r, t]]
            slices[dst, t] = np.conj(v) if conj[r, t] else v


@numba.njit(cache=True)
def _fold_derived(grads, derived, parent, perm, conj):
    for r in range(derived.size):
        dst, src = derived[r], parent[r]
        for t in range(perm.shape[1]):
            v = grads[dst, t]
            grads[src, perm[r, t]] += np.conj(v) if conj[r, t] else v


def find_derived_rows(coords: np.ndarray, decimals: int = 4):
    """Rows whose coordinate set is a signed permutation of an earlier row's.

    For a real density the spectrum is Hermitian (``Vhat(-q) = conj Vhat(q)``)
    and trilinear interpolation on the symmetric cube keeps that exactly, so
    a slice whose sample points are ``+-`` a permutation of another slice's
    points is a permutation (with conjugations) of that slice.  Antipodal
    Lebedev directions produce such pairs: the pose ``(-d, pi - psi)`` is the
    pose ``(d, psi)`` seen in a mirror, which halves the trilinear work.

    Returns ``(primary, derived, parent, perm, conj)``: ``slice[derived[r],
    t] = slice[parent[r], perm[r, t]]``, conjugated where ``conj[r, t]``.
    """
    scale = 10.0**decimals
    keys = np.round(coords.astype(np.float64) * scale).astype(np.int64)      # (n, T, 3)
    # canonical sign: first non-zero coordinate positive
    first = np.where(keys[..., 0] != 0, keys[..., 0], np.where(keys[..., 1] != 0, keys[..., 1], keys[..., 2]))
    flip = first < 0
    canon = np.where(flip[..., None], -keys, keys)
    seen: dict[bytes, int] = {}
    orders = []
    primary, derived, parent, perms, conjs = [], [], [], [], []
    for row in range(coords.shape[0]):
        c = canon[row]
        order = np.lexsort((c[:, 2], c[:, 1], c[:, 0]))
        orders.append(order)
        signature = c[order].tobytes()
        if signature in seen:
            src = seen[signature]
            perm = np.empty(c.shape[0], dtype=np.int64)
            perm[order] = orders[src]
            derived.append(row)
            parent.append(src)
            perms.append(perm)
            conjs.append(flip[row] != flip[src][perm])
        else:
            seen[signature] = row
            primary.append(row)
    t = coords.shape[1]
    return (np.asarray(primary, dtype=np.int64), np.asarray(derived, dtype=np.int64),
            np.asarray(parent, dtype=np.int64), np.asarray(perms, dtype=np.int64).reshape(-1, t),
            np.asarray(conjs, dtype=bool).reshape(-1, t))


class Slicer:
    """The linear map cube -> slices (``T``) and its adjoint (``T^T``).

    Only the rows found *primary* by :func:`find_derived_rows` are
    interpolated; the others are copied from their parents (forward) and
    folded back into them (adjoint).

    Parameters
    ----------
    coords : ndarray, shape (n_pose, T, 3)
        Cube coordinates relative to the cube centre (from :func:`slice_coordinates`).
    m_max : int
        Cube half-width; the cube has ``2 m_max + 1`` samples per axis.
    use_symmetry : bool
        Derive mirrored slices instead of interpolating them (default True).
    """

    def __init__(self, coords: np.ndarray, m_max: int, use_symmetry: bool = True):
        if np.abs(coords).max() > m_max - 1:
            raise ValueError("slice coordinates leave the cube; increase m_max")
        self.coords = coords
        self.m_max = int(m_max)
        n = coords.shape[0]
        if use_symmetry:
            self.primary, self.derived, self.parent, self.perm, self.conj = find_derived_rows(coords)
        else:
            self.primary = np.arange(n)
            self.derived = self.parent = np.zeros(0, dtype=np.int64)
            self.perm, self.conj = np.zeros((0, coords.shape[1]), np.int64), np.zeros((0, coords.shape[1]), bool)
        self._primary_coords = np.ascontiguousarray(coords[self.primary])
        self._all_primary = self.derived.size == 0 and np.array_equal(self.primary, np.arange(n))
        self._fold: np.ndarray | None = None          # work array of the adjoint (not thread-safe)

    @property
    def n_interpolated(self) -> int:
        return int(self.primary.size)

    def forward(self, cube: np.ndarray) -> np.ndarray:
        """Slices (n_pose, T): primary rows interpolated in place, the others copied."""
        offset = self.coords.dtype.type(self.m_max)
        out = np.empty(self.coords.shape[:2], dtype=cube.dtype)
        _gather(cube, offset, self._primary_coords, self.primary, out)
        if not self._all_primary:
            _copy_derived(out, self.derived, self.parent, self.perm, self.conj)
        return out

    def adjoint(self, values: np.ndarray) -> np.ndarray:
        """``T^T values``, a (K, K, K) cube (``values`` is not modified)."""
        k = 2 * self.m_max + 1
        if not self._all_primary:
            # fold into a reused copy: a fresh MB-sized one costs page faults every step
            if self._fold is None or self._fold.shape != values.shape or self._fold.dtype != values.dtype:
                self._fold = np.empty_like(values)
            np.copyto(self._fold, values)
            values = self._fold
            _fold_derived(values, self.derived, self.parent, self.perm, self.conj)
        n_chunk = max(1, min(numba.get_num_threads(), self.primary.size))
        partial = np.zeros((n_chunk, k, k, k), dtype=values.dtype)
        _scatter(values, self.coords.dtype.type(self.m_max), self._primary_coords, self.primary, partial)
        return partial.sum(axis=0)


def gather_points(cube: np.ndarray, offset: float, coords: np.ndarray) -> np.ndarray:
    """Trilinear values of ``cube`` at ``coords + offset`` (shape (n, T, 3)); used by simulation."""
    if coords.min() + offset < 0 or coords.max() + offset >= cube.shape[0] - 1:
        raise ValueError("gather_points: coordinates outside the cube")
    out = np.empty(coords.shape[:2], dtype=cube.dtype)
    _gather(cube, coords.dtype.type(offset), np.ascontiguousarray(coords), np.arange(coords.shape[0]), out)
    return out
