"""Helpers shared by several optimizers (kept to three)."""
from __future__ import annotations

import numpy as np


def annealed(eta0: float, decay: float, t: int) -> float:
    """Paper Sec. 4 learning-rate schedule ``eta_t = eta_0 (1 + lambda t)^-0.75``."""
    return eta0 * (1.0 + decay * t) ** -0.75


def momentum_schedule(t: int, mu_max: float = 0.9) -> float:
    """Paper Sec. 4 (after Sutskever et al. 2013): ``min{mu_max, 1 - 2^(-1 - log2(floor(t/100) + 1))}``."""
    return min(mu_max, 1.0 - 2.0 ** (-1.0 - np.log2(np.floor(t / 100) + 1)))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product by BLAS (float32 volumes: sdot, multithreaded; converting to float64 cost more than the step)."""
    return float(np.dot(a.ravel(), b.ravel()))
