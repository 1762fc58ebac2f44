"""Pose quadrature over SO(3) x shifts (paper Eqs. 3-4).

Rotations are RELION's ZYZ Euler angles ``(rot, tilt, psi)`` with matrix
``A = Rz(psi) Ry(tilt) Rz(rot)``; a 3D point ``r`` (x, y, z order) projects
to the image position ``(A r)_xy`` and the image frequency ``k`` samples the
volume's Fourier transform at ``q = A^T [kx, ky, 0]`` (Fourier slice theorem).
The beam direction is the third row of ``A``:
``d = (sin(tilt) cos(rot), sin(tilt) sin(rot), cos(tilt))``.

Quadrature rule, chosen from the band limit ``r_max`` so that neighbouring
poses move the band's outermost coefficient by about one frequency index
(angular step about ``1 / r_max`` radians):

* directions: the smallest Lebedev rule (``scipy.integrate.lebedev_rule``)
  with at least ``4 pi r_max^2`` points and only positive weights (scipy's
  orders 13, 25 and 27 have negative ones and are skipped), weights from the rule;
* in-plane angles: ``n_psi = 4 * max(1, round(2 pi r_max / 4))`` uniform
  angles ``psi_l = 2 pi l / n_psi`` (a multiple of 4 so that quarter turns
  map the pose set onto itself; see :mod:`problems.model.grids`);
* shifts: integer-pixel offsets ``s`` with ``|s| <= shift_extent`` weighted
  by a normal prior of standard deviation ``shift_sigma`` truncated to that
  disc (paper Eq. 3); ``shift_extent = 0`` gives the single zero shift.

All weights are normalised to sum to one, so ``w_j`` is a probability over
poses.  At 10% Nyquist of a 128 px box (``r_max = 6.4``) the rule gives 590
directions x 40 in-plane angles = 23,600 rotations; at 16% (``r_max = 10.24``)
1454 x 64 = 93,056 (the paper reports "approximately 95,000").

Pose order (used by every posterior matrix): ``j = ((s * 4 + q) * n_dir + d)
* (n_psi / 4) + l`` for shift ``s``, quarter turn ``q``, direction ``d`` and
base in-plane index ``l``; the pose's in-plane angle is
``2 pi (l + q n_psi / 4) / n_psi``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import lebedev_rule

# Orders accepted by scipy.integrate.lebedev_rule with all weights positive, and their
# point counts.  scipy's orders 13 (74 points), 25 (230) and 27 (266) have negative
# weights: as a probability over poses they make log w undefined (NaN NLL), so they
# are skipped (the next larger rule is used).
LEBEDEV_ORDERS = (3, 5, 7, 9, 11, 15, 17, 19, 21, 23, 29, 31, 35, 41, 47, 53,
                  59, 65, 71, 77, 83, 89, 95, 101, 107, 113, 119, 125, 131)
LEBEDEV_SIZES = (6, 14, 26, 38, 50, 86, 110, 146, 170, 194, 302, 350, 434,
                 590, 770, 974, 1202, 1454, 1730, 2030, 2354, 2702, 3074, 3470, 3890,
                 4334, 4802, 5294, 5810)


def euler_to_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION's ``Euler_angles2matrix``: ``A = Rz(psi) Ry(tilt) Rz(rot)``.

    Angles in radians (broadcastable arrays); returns shape ``(..., 3, 3)``.
    """
    rot, tilt, psi = np.broadcast_arrays(np.asarray(rot, float), np.asarray(tilt, float),
                                         np.asarray(psi, float))
    ca, sa = np.cos(rot), np.sin(rot)
    cb, sb = np.cos(tilt), np.sin(tilt)
    cg, sg = np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    a = np.empty(rot.shape + (3, 3))
    a[..., 0, 0] = cg * cc - sg * sa
    a[..., 0, 1] = cg * cs + sg * ca
    a[..., 0, 2] = -cg * sb
    a[..., 1, 0] = -sg * cc - cg * sa
    a[..., 1, 1] = -sg * cs + cg * ca
    a[..., 1, 2] = sg * sb
    a[..., 2, 0] = sc
    a[..., 2, 1] = ss
    a[..., 2, 2] = cb
    return a


def direction_to_euler(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beam directions (3, n) on S^2 -> ``(rot, tilt)`` in radians."""
    x, y, z = directions
    tilt = np.arccos(np.clip(z, -1.0, 1.0))
    rot = np.arctan2(y, x)
    return rot, tilt


def lebedev_order_for(min_points: float) -> int:
    """Smallest Lebedev order with at least ``min_points`` points (largest if none)."""
    for order, size in zip(LEBEDEV_ORDERS, LEBEDEV_SIZES):
        if size >= min_points:
            return order
    return LEBEDEV_ORDERS[-1]


@dataclass(frozen=True)
class PoseQuadrature:
    """Weighted quadrature points over rotations and shifts (paper Eq. 4).

    Attributes
    ----------
    rot, tilt : ndarray, shape (n_dir,)
        Euler angles (radians) of the Lebedev directions.
    direction_weights : ndarray, shape (n_dir,)
        Lebedev weights normalised to sum to 1.
    n_psi : int
        Number of uniform in-plane angles (multiple of 4).
    shifts : ndarray, shape (n_shift, 2)
        Shift offsets (x, y) in pixels.
    shift_weights : ndarray, shape (n_shift,)
        Truncated-normal prior weights, summing to 1.
    lebedev_order : int
        Order passed to ``scipy.integrate.lebedev_rule``.
    """

    rot: np.ndarray
    tilt: np.ndarray
    direction_weights: np.ndarray
    n_psi: int
    shifts: np.ndarray
    shift_weights: np.ndarray
    lebedev_order: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_dir(self) -> int:
        return int(self.rot.shape[0])

    @property
    def n_base(self) -> int:
        """Rotations whose slices are extracted: directions x n_psi / 4."""
        return self.n_dir * (self.n_psi // 4)

    @property
    def n_rotations(self) -> int:
        return self.n_dir * self.n_psi

    @property
    def n_shifts(self) -> int:
        return int(self.shifts.shape[0])

    @property
    def size(self) -> int:
        """Total number of poses ``M`` (rotations x shifts)."""
        return self.n_rotations * self.n_shifts

    def base_matrices(self) -> np.ndarray:
        """Rotation matrices of the base poses (quarter turn 0), shape (n_base, 3, 3)."""
        if "base" not in self._cache:
            psi = 2 * np.pi * np.arange(self.n_psi // 4) / self.n_psi
            rot = np.repeat(self.rot, self.n_psi // 4)
            tilt = np.repeat(self.tilt, self.n_psi // 4)
            self._cache["base"] = euler_to_matrix(rot, tilt, np.tile(psi, self.n_dir))
        return self._cache["base"]

    def log_weights(self) -> np.ndarray:
        """``log w_j`` in pose order, shape (n_shift * 4, n_base)."""
        rot_w = np.repeat(self.direction_weights, self.n_psi // 4) / self.n_psi
        logw = np.log(self.shift_weights)[:, None, None] + np.log(rot_w)[None, None, :]
        return np.broadcast_to(logw, (self.n_shifts, 4, self.n_base)).reshape(
            self.n_shifts * 4, self.n_base)

    def euler_angles(self) -> np.ndarray:
        """``(rot, tilt, psi)`` in radians of every pose in pose order, shape (M, 3)."""
        n4 = self.n_psi // 4
        s, q, d, l = np.meshgrid(np.arange(self.n_shifts), np.arange(4), np.arange(self.n_dir),
                                 np.arange(n4), indexing="ij")
        psi = 2 * np.pi * (l + q * n4) / self.n_psi
        return np.stack([self.rot[d].ravel(), self.tilt[d].ravel(), psi.ravel()], axis=1)

    def describe(self) -> dict:
        return {"lebedev_order": self.lebedev_order, "n_directions": self.n_dir,
                "n_inplane": self.n_psi, "n_shifts": self.n_shifts, "n_poses": self.size}


def make_quadrature(r_max: float, shift_extent: float = 0.0, shift_sigma: float = 1.0,
                    min_directions: float | None = None, n_psi: int | None = None) -> PoseQuadrature:
    """Build the documented quadrature for band limit ``r_max`` (see module docstring)."""
    if min_directions is None:
        min_directions = 4 * np.pi * r_max**2
    if n_psi is None:
        n_psi = 4 * max(1, int(round(2 * np.pi * r_max / 4)))
    if n_psi % 4:
        raise ValueError(f"n_psi must be a multiple of 4, got {n_psi}")
    order = lebedev_order_for(min_directions)
    points, weights = lebedev_rule(order)
    if not np.all(weights > 0):          # guards LEBEDEV_ORDERS against a scipy change
        raise ValueError(f"Lebedev order {order} has non-positive weights")
    rot, tilt = direction_to_euler(points)
    extent = int(np.floor(shift_extent))
    sx, sy = np.meshgrid(np.arange(-extent, extent + 1), np.arange(-extent, extent + 1), indexing="xy")
    inside = sx**2 + sy**2 <= shift_extent**2 + 1e-9
    shifts = np.stack([sx[inside], sy[inside]], axis=1).astype(float)
    if shifts.shape[0] == 0:
        shifts = np.zeros((1, 2))
    sw = np.exp(-(shifts**2).sum(1) / (2 * shift_sigma**2))
    return PoseQuadrature(rot=rot, tilt=tilt, direction_weights=weights / weights.sum(),
                          n_psi=int(n_psi), shifts=shifts, shift_weights=sw / sw.sum(),
                          lebedev_order=order)
