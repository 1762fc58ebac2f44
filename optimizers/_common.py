"""Helpers shared by several optimizers (kept few)."""
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


def armijo_backtrack(oracle, x: np.ndarray, direction: np.ndarray, idx, f: float, decrease: float, eta: float,
                     armijo: float, max_halvings: int) -> tuple[np.ndarray, float]:
    """Halve ``eta`` until ``f_B(x - eta d) <= f - armijo eta decrease`` (each trial a value on batch ``idx``).

    Returns the accepted point and its ``eta``; when all ``max_halvings``
    trials fail the step is rejected: ``x`` itself, with ``eta`` halved that
    many times.  Taking the last failed trial instead let a direction with
    huge entries throw the iterate away (Toader et al.'s Algorithm 1 without
    its threshold, issue 23); their loop halves until the test passes, which
    never moves uphill.
    """
    for _ in range(max_halvings):
        trial = x - eta * direction
        if oracle.value(trial, idx) <= f - armijo * eta * decrease:
            return trial, eta
        eta /= 2
    return x, eta
