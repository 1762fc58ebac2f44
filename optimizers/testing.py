"""A convex quadratic oracle with a known minimiser, same API as the real one.

``f_i(x) = 0.5 (x - m)^T diag(h_i) (x - m)`` with per-image positive curvatures
``h_i`` whose mean is ``h``; the minimiser of the mean is ``m`` for every
batch, so stochastic methods converge to it exactly.
"""
from __future__ import annotations

import numpy as np

from problems.protocol import COST_GRADIENT, COST_HVP, COST_VALUE, BudgetExhausted

from .base import OptimizerInfo


class QuadraticOracle:
    # The oracle calls it answers: optimizers whose `needs` fit run on it (no expectation / m_step).
    provides = frozenset({"value", "value_and_grad", "hvp", "next_batch"})

    def __init__(self, shape=(4, 4, 4), n_train: int = 64, budget: float | None = None,
                 condition: float = 10.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.shape, self.n_train, self.dtype = tuple(shape), n_train, np.dtype(np.float64)
        size = int(np.prod(shape))
        base = np.geomspace(1.0, condition, size).reshape(shape)
        self._h = base[None] * rng.uniform(0.5, 1.5, (n_train,) + self.shape)
        self.minimiser = rng.standard_normal(self.shape)
        self._budget, self._evals, self._pos = budget, 0.0, 0
        self._order = rng.permutation(n_train)

    @property
    def evals(self) -> float:
        return self._evals

    @property
    def budget(self):
        return self._budget

    def info(self) -> OptimizerInfo:
        # the exact largest eigenvalue of the mean Hessian, as the harness's estimate would find it
        return OptimizerInfo(self.n_train, self.shape, self._budget, float(self._h.mean(0).max()))

    def _charge(self, c, n):
        if self._budget is not None and self._evals + c * n > self._budget + 1e-9:
            raise BudgetExhausted("quadratic: budget exhausted")
        self._evals += c * n

    def value(self, x, idx):
        idx = np.asarray(idx)
        self._charge(COST_VALUE, idx.size)
        d = np.asarray(x) - self.minimiser
        return float(0.5 * np.mean(np.sum(self._h[idx] * d * d, axis=(1, 2, 3))))

    def value_and_grad(self, x, idx):
        idx = np.asarray(idx)
        self._charge(COST_GRADIENT, idx.size)
        d = np.asarray(x) - self.minimiser
        h = self._h[idx].mean(0)
        return float(0.5 * np.mean(np.sum(self._h[idx] * d * d, axis=(1, 2, 3)))), h * d

    def hvp(self, x, v, idx):
        idx = np.asarray(idx)
        self._charge(COST_HVP, idx.size)
        return self._h[idx].mean(0) * np.asarray(v)

    def next_batch(self, size):
        out = np.array([self._order[(self._pos + i) % self.n_train] for i in range(size)])
        self._pos += size
        return out
