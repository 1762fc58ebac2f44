"""The oracle protocol every optimizer sees, and its cost model.

Cost is counted in per-image gradient evaluations: a value costs 0.5 per
image, a value-and-gradient 1, a Hessian-vector product 2, an expectation
(posterior-weighted back-projection, for EM-type baselines) 1.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

COST_VALUE = 0.5
COST_GRADIENT = 1.0
COST_HVP = 2.0
COST_EXPECTATION = 1.0


class BudgetExhausted(RuntimeError):
    """Raised instead of doing work that would take the oracle past its budget."""


class OracleInputError(ValueError):
    """An oracle call got an argument it cannot use (the message names problem and argument)."""


@runtime_checkable
class Oracle(Protocol):
    """What an optimizer may call.  See :class:`problems.oracle.CountingOracle`."""

    n_train: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def evals(self) -> float: ...

    @property
    def budget(self) -> float | None: ...

    def value(self, x: np.ndarray, idx: np.ndarray) -> float: ...

    def value_and_grad(self, x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]: ...

    def hvp(self, x: np.ndarray, v: np.ndarray, idx: np.ndarray) -> np.ndarray: ...

    def next_batch(self, size: int) -> np.ndarray: ...
