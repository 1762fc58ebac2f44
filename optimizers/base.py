"""The optimizer plug-in protocol.

An optimizer is a small frozen dataclass whose fields are its
hyperparameters, with a class-level ``name`` and ``search_space`` and two pure
methods (optax style, but handed the oracle because LBFGS, HF, SAGD and EM
need values, extra batches and Hessian-vector products):

* ``init(x0, info, rng) -> state``
* ``step(x, state, oracle, rng) -> (x, state)``

``step`` must not mutate ``x`` or ``state`` and draws randomness only from
``rng``.  Cost is whatever the step asked the oracle for; a step that would
exceed the budget raises :class:`problems.BudgetExhausted` from the oracle and
the runner stops there.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from problems.protocol import Oracle, OptimizerInfo


@dataclass(frozen=True)
class Range:
    """A hyperparameter range for tuning: ``scale`` is "log" or "linear"."""

    low: float
    high: float
    scale: str = "log"

    def as_dict(self) -> dict:
        return {"min": self.low, "max": self.high, "scaling": self.scale}


@runtime_checkable
class Optimizer(Protocol):
    name: ClassVar[str]
    search_space: ClassVar[dict[str, Range]]

    def init(self, x0: np.ndarray, info: OptimizerInfo, rng: np.random.Generator) -> Any: ...

    def step(self, x: np.ndarray, state: Any, oracle: Oracle,
             rng: np.random.Generator) -> tuple[np.ndarray, Any]: ...


def hyperparameters(opt) -> dict:
    """The optimizer's hyperparameters (its dataclass fields) as a plain dict."""
    return {f.name: getattr(opt, f.name) for f in fields(opt)}
