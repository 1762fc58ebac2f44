"""Densities: the synthetic molecule and the random initialisation.

Both are defined in box-fraction coordinates ``u = (r - c) / N`` so they look
the same at every box size, and kept inside ``|u| < 0.35`` so the 2x
oversampled spectrum interpolates them accurately.  The synthetic molecule
is a Gaussian mixture (:mod:`problems.data.gaussians`), so its images are
computed exactly, not with the objective's interpolation.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from .gaussians import GaussianMixture


def _grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = (np.arange(n) - n // 2) / n
    return np.meshgrid(u, u, u, indexing="ij")          # z, y, x


def _soft_step(signed_distance: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 - erf(signed_distance / width))


# Lobes (x, y, z, width, amplitude) in box fractions, placed without any symmetry.
_LOBES = ((0.11, 0.04, 0.17, 0.050, 1.4), (-0.10, 0.07, -0.11, 0.045, 1.3),
          (0.05, -0.13, 0.04, 0.040, 1.1), (-0.04, -0.07, 0.22, 0.036, 1.6),
          (0.14, -0.03, -0.16, 0.036, 1.0), (-0.13, -0.02, 0.05, 0.036, 0.8))


def synthetic_mixture(n: int, rng: np.random.Generator | None = None) -> GaussianMixture:
    """The synthetic molecule as isotropic Gaussians in pixel units (paper Fig. 2's look).

    With ``rng`` (the dataset's ``"phantom"`` stream) the molecule's random
    parts are drawn from it: the core's tilt (12 +- 4 degrees about y), each
    lobe's centre (jittered by N(0, 0.015^2) box fractions per axis) and
    amplitude (x U(0.85, 1.15)).  Every dataset seed thus has its own ground
    truth, so a scored instance generated from a secret seed cannot be
    known in advance from this (public) code; ``rng=None`` gives the
    documented layout below.

    * core: a cylinder of length ~0.42 N and radius ~0.07 N tilted by 12
      degrees about y, built as 11 layers along its axis, each an axial
      Gaussian (width 0.04 N) and a ring of 6 (width 0.03 N at radius
      0.045 N, rotated by 30 degrees every other layer) -- overlapping
      enough that the tube is smooth, and carrying most of the mass;
    * six lobes of different sizes (:data:`_LOBES`) and an off-centre cap
      (a disc of 7 Gaussians at the bottom) break every symmetry of the
      cylinder, so the solution is unique up to the global pose and hand.

    Widths are box fractions (the same look at every box size) and at least
    0.03 N, i.e. >= 0.7 px even at N = 24, so the grid samples each
    component with in-band aliasing below 1e-4.  Peak density is about 3
    (the problem rescales it to its SNR).
    """
    tilt = np.deg2rad(12.0 if rng is None else 12.0 + rng.uniform(-4.0, 4.0))
    axis = np.array([np.sin(tilt), 0.0, np.cos(tilt)])              # (x, y, z)
    e1 = np.array([np.cos(tilt), 0.0, -np.sin(tilt)])
    e2 = np.array([0.0, 1.0, 0.0])
    centres, widths, amps = [], [], []
    for layer, t in enumerate(np.linspace(-0.19, 0.19, 11)):
        centres.append(t * axis); widths.append(0.04); amps.append(0.55)
        for m in range(6):
            ang = np.pi / 3 * m + (np.pi / 6) * (layer % 2)
            centres.append(t * axis + 0.045 * (np.cos(ang) * e1 + np.sin(ang) * e2))
            widths.append(0.03); amps.append(0.45)
    for cx, cy, cz, w, a in _LOBES:
        if rng is not None:
            cx, cy, cz = np.array([cx, cy, cz]) + rng.normal(0.0, 0.015, 3)
            a *= rng.uniform(0.85, 1.15)
        centres.append((cx, cy, cz)); widths.append(w); amps.append(a)
    for m in range(7):                                                   # the cap: a disc at z = -0.235
        ang, rad = 2 * np.pi * m / 6, 0.0 if m == 6 else 0.06
        centres.append((0.03 + rad * np.cos(ang), -0.02 + rad * np.sin(ang), -0.235))
        widths.append(0.03); amps.append(0.35)
    return GaussianMixture(np.asarray(centres) * n, np.asarray(widths) * n, np.asarray(amps))


def synthetic_phantom(n: int) -> np.ndarray:
    """:func:`synthetic_mixture` sampled on the (n, n, n) grid (float32, ``[z, y, x]``, non-negative)."""
    return synthetic_mixture(n).density(n)


def random_spheres(n: int, rng: np.random.Generator, n_spheres: int = 12) -> np.ndarray:
    """A random sum of soft-edged spheres (paper Fig. 5), unit density per sphere.

    Centres are uniform in the ball ``|u| < 0.18``; radii uniform in
    ``[0.03, 0.08]`` box fractions.
    """
    z, y, x = _grid(n)
    vol = np.zeros((n, n, n))
    edge = 0.6 / n + 0.004
    for _ in range(n_spheres):
        direction = rng.standard_normal(3)
        centre = direction / np.linalg.norm(direction) * 0.18 * rng.uniform() ** (1 / 3)
        radius = rng.uniform(0.03, 0.08)
        dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
        vol += _soft_step(dist - radius, edge)
    return vol.astype(np.float32)
