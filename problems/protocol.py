"""The oracle protocol every optimizer sees, and its cost model.

Cost is counted in per-image gradient evaluations: a value costs 0.5 per
image, a value-and-gradient 1, a Hessian-vector product 2, an expectation
(posterior-weighted back-projection, for EM-type baselines) 1.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

COST_VALUE = 0.5
COST_GRADIENT = 1.0
COST_HVP = 2.0
COST_EXPECTATION = 1.0


class BudgetExhausted(RuntimeError):
    """Raised instead of doing work that would take the oracle past its budget."""


class OracleInputError(ValueError):
    """An oracle call got an argument it cannot use (the message names problem and argument)."""


@dataclass(frozen=True)
class EStepStatistics:
    """Posterior-weighted sums over ``count`` images returned by ``expectation``
    (they add up over batches and go back to ``m_step``)."""

    za: np.ndarray
    zq: np.ndarray
    count: int

    def __add__(self, other: "EStepStatistics") -> "EStepStatistics":
        return EStepStatistics(self.za + other.za, self.zq + other.zq, self.count + other.count)


@runtime_checkable
class Oracle(Protocol):
    """Everything an optimizer may call (see :class:`problems.oracle.CountingOracle`).

    Costs per image: ``value`` 0.5, ``value_and_grad`` 1, ``hvp`` 2,
    ``expectation`` 1; ``m_step`` and ``next_batch`` are free.
    """

    n_train: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def evals(self) -> float: ...

    @property
    def budget(self) -> float | None: ...

    @property
    def remaining(self) -> float: ...

    def value(self, x: np.ndarray, idx: np.ndarray) -> float: ...

    def value_and_grad(self, x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]: ...

    def hvp(self, x: np.ndarray, v: np.ndarray, idx: np.ndarray) -> np.ndarray: ...

    def expectation(self, x: np.ndarray, idx: np.ndarray, hard: bool = False) -> Any: ...

    def m_step(self, stats: Any, x0: np.ndarray, max_iter: int = 30) -> np.ndarray: ...

    def next_batch(self, size: int) -> np.ndarray: ...


class NonFiniteInput(OracleInputError):
    """An oracle call got NaN or infinite values: the optimizer has diverged.

    The runner records such a run as ``diverged`` from this type alone.
    """


@dataclass(frozen=True)
class OptimizerInfo:
    """What an optimizer may know before it starts (the same for tuning and scored runs).

    ``curvature``: the harness's curvature scale ``L`` at the initial density
    -- the largest-magnitude eigenvalue of the minibatch objective's Hessian,
    measured by the harness the same way for every run and optimizer
    (:func:`bench.score.curvature.estimate_curvature`, uncharged), or ``None`` when
    nobody measured it.  Built-in optimizers take their step sizes relative
    to it (``eta = lr / L``), so one default works at every box size and band.
    """

    n_train: int
    shape: tuple[int, ...]
    budget: float | None
    curvature: float | None = None


def hutchinson_diagonal(hvp: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], n_probes: int,
                        rng: np.random.Generator, dtype=np.float64) -> Iterator[np.ndarray]:
    """Hutchinson's estimator of ``diag(H)``: yields the running means ``D_1, ..., D_n``.

    .. math:: D_k = \\frac{1}{k} \\sum_{j \\le k} z_j \\odot H z_j,
              \\qquad z_j \\in \\{-1, +1\\}^{\\text{shape}} \\text{ Rademacher},

    unbiased because ``E[z z^T] = I`` (so ``E[z_i (Hz)_i] = H_ii``).
    ``hvp(z)`` returns ``H z`` (through an oracle it is charged, and may use a
    different minibatch per probe: each ``H_B`` is unbiased for ``H``).  The
    one estimator of the project: Hutchinson-preconditioned SGD takes one
    probe per step (``n_probes=1``), :mod:`problems.model.spectra` averages
    many in band coordinates.  Each ``D_k`` is a new array.
    """
    mean = np.zeros(shape, dtype=dtype)
    signs = np.array([-1.0, 1.0], dtype=dtype)
    for k in range(1, n_probes + 1):
        z = rng.choice(signs, size=shape)
        mean = mean + (z * hvp(z) - mean) / k
        yield mean
