"""Densities: the synthetic molecule and the random initialisation.

Both are defined in box-fraction coordinates ``u = (r - c) / N`` so they look
the same at every box size, and kept inside ``|u| < 0.35`` so the 2x
oversampled spectrum interpolates them accurately.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erf


def _grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = (np.arange(n) - n // 2) / n
    return np.meshgrid(u, u, u, indexing="ij")          # z, y, x


def _soft_step(signed_distance: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 - erf(signed_distance / width))


def synthetic_phantom(n: int) -> np.ndarray:
    """An asymmetric, molecule-like density with a strong cylindrical core (paper Fig. 2).

    A tilted solid cylinder (radius 0.07 N, length 0.42 N) carries most of
    the mass; six Gaussian lobes of different sizes, placed without any
    symmetry, and an off-centre cap break every symmetry of the cylinder so
    the solution is unique up to the global pose and hand.  Peak density is
    about 1 (the problem rescales it to the stated SNR).
    """
    z, y, x = _grid(n)
    edge = 0.6 / n + 0.004
    tilt = np.deg2rad(12.0)
    axis_z = z * np.cos(tilt) + x * np.sin(tilt)
    axis_x = -z * np.sin(tilt) + x * np.cos(tilt)
    radial = np.sqrt(axis_x**2 + y**2)
    core = _soft_step(radial - 0.07, edge) * _soft_step(np.abs(axis_z) - 0.21, edge)
    lobes = [  # (x, y, z, width, amplitude) in box fractions
        (0.11, 0.04, 0.17, 0.050, 0.9),
        (-0.10, 0.07, -0.11, 0.045, 0.8),
        (0.05, -0.13, 0.04, 0.040, 0.7),
        (-0.04, -0.07, 0.22, 0.035, 1.0),
        (0.14, -0.03, -0.16, 0.030, 0.6),
        (-0.13, -0.02, 0.05, 0.028, 0.5),
    ]
    vol = 1.0 * core
    for cx, cy, cz, w, a in lobes:
        vol += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * w**2))
    cap = _soft_step(np.sqrt((x - 0.03) ** 2 + (y + 0.02) ** 2) - 0.1, edge) \
        * _soft_step(np.abs(z + 0.235) - 0.025, edge)
    vol += 0.6 * cap
    return gaussian_filter(vol, sigma=0.5).astype(np.float32)


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
