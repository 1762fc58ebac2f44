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


# Coordinates plus offset are never negative (checked in Slicer), so truncation
# toward zero is the floor; it is half the cost of np.floor here.
@numba.njit(parallel=True, cache=True, fastmath=True)
def _gather(cube, offset, coords, out):
    n_pose, n_coef = coords.shape[0], coords.shape[1]
    for j in numba.prange(n_pose):
        for t in range(n_coef):
            px = coords[j, t, 0] + offset
            py = coords[j, t, 1] + offset
            pz = coords[j, t, 2] + offset
            ix, iy, iz = np.int32(px), np.int32(py), np.int32(pz)
            fx, fy, fz = px - ix, py - iy, pz - iz
            gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
            out[j, t] = (gz * (gy * (gx * cube[iz, iy, ix] + fx * cube[iz, iy, ix + 1])
                               + fy * (gx * cube[iz, iy + 1, ix] + fx * cube[iz, iy + 1, ix + 1]))
                         + fz * (gy * (gx * cube[iz + 1, iy, ix] + fx * cube[iz + 1, iy, ix + 1])
                                 + fy * (gx * cube[iz + 1, iy + 1, ix]
                                         + fx * cube[iz + 1, iy + 1, ix + 1])))


@numba.njit(parallel=True, cache=True, fastmath=True)
def _scatter(values, offset, coords, partial):
    n_chunk = partial.shape[0]
    n_pose, n_coef = coords.shape[0], coords.shape[1]
    for c in numba.prange(n_chunk):
        acc = partial[c]
        for j in range(c * n_pose // n_chunk, (c + 1) * n_pose // n_chunk):
            for t in range(n_coef):
                v = values[j, t]
                px = coords[j, t, 0] + offset
                py = coords[j, t, 1] + offset
                pz = coords[j, t, 2] + offset
                ix, iy, iz = np.int32(px), np.int32(py), np.int32(pz)
                fx, fy, fz = px - ix, py - iy, pz - iz
                gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
                acc[iz, iy, ix] += gz * gy * gx * v
                acc[iz, iy, ix + 1] += gz * gy * fx * v
                acc[iz, iy + 1, ix] += gz * fy * gx * v
                acc[iz, iy + 1, ix + 1] += gz * fy * fx * v
                acc[iz + 1, iy, ix] += fz * gy * gx * v
                acc[iz + 1, iy, ix + 1] += fz * gy * fx * v
                acc[iz + 1, iy + 1, ix] += fz * fy * gx * v
                acc[iz + 1, iy + 1, ix + 1] += fz * fy * fx * v


def slice_coordinates(rotations: np.ndarray, band_k: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Cube coordinates ``2 A^T [k, 0]`` (x, y, z), shape (n_pose, T, 3)."""
    k = np.asarray(band_k, dtype=np.float64)
    q = k[None, :, 0:1] * rotations[:, None, 0, :] + k[None, :, 1:2] * rotations[:, None, 1, :]
    return np.ascontiguousarray((2.0 * q).astype(dtype))


class Slicer:
    """The linear map cube -> slices (``T``) and its adjoint (``T^T``).

    Parameters
    ----------
    coords : ndarray, shape (n_pose, T, 3)
        Cube coordinates relative to the cube centre (from :func:`slice_coordinates`).
    m_max : int
        Cube half-width; the cube has ``2 m_max + 1`` samples per axis.
    """

    def __init__(self, coords: np.ndarray, m_max: int):
        if np.abs(coords).max() > m_max - 1:
            raise ValueError("slice coordinates leave the cube; increase m_max")
        self.coords = coords
        self.m_max = int(m_max)

    def forward(self, cube: np.ndarray) -> np.ndarray:
        out = np.empty(self.coords.shape[:2], dtype=cube.dtype)
        _gather(cube, self.coords.dtype.type(self.m_max), self.coords, out)
        return out

    def adjoint(self, values: np.ndarray) -> np.ndarray:
        k = 2 * self.m_max + 1
        n_chunk = max(1, min(numba.get_num_threads(), values.shape[0]))
        partial = np.zeros((n_chunk, k, k, k), dtype=values.dtype)
        _scatter(values, self.coords.dtype.type(self.m_max), self.coords, partial)
        return partial.sum(axis=0)


def gather_points(cube: np.ndarray, offset: float, coords: np.ndarray) -> np.ndarray:
    """Trilinear values of ``cube`` at ``coords + offset`` (shape (n, T, 3)); used by simulation."""
    if coords.min() + offset < 0 or coords.max() + offset >= cube.shape[0] - 1:
        raise ValueError("gather_points: coordinates outside the cube")
    out = np.empty(coords.shape[:2], dtype=cube.dtype)
    _gather(cube, coords.dtype.type(offset), np.ascontiguousarray(coords), out)
    return out
