"""What a trusted in-process optimizer is handed: a facade of the oracle and a cost ledger.

* :func:`guarded` wraps a :class:`problems.oracle.CountingOracle` in an object
  with only the public API (``__slots__``, no attributes to overwrite, no
  private methods); the real oracle is reachable only through closures.
* Every call through the facade is also entered in a ledger kept by the
  harness; after each step the runner checks that the oracle's counter
  equals the ledger and never decreases, so resetting or lowering the real
  counter is detected (status ``error``, "tampering detected").

This catches bugs (an optimizer that resets the counter), not attacks: code
in the same process can reach anything.  Submitted code never runs here; it
runs in the sandbox of :mod:`bench.isolation`, where the counter lives in
another process.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from problems.protocol import COST_EXPECTATION, COST_GRADIENT, COST_HVP, COST_VALUE


@dataclass
class Ledger:
    """Costs of the calls that went through the facade, as the harness counted them."""

    total: float = 0.0
    calls: dict = field(default_factory=lambda: {"value": 0, "value_and_grad": 0, "hvp": 0, "expectation": 0})


class TamperingDetected(RuntimeError):
    pass


def guarded(oracle) -> tuple[object, Ledger]:
    """Return ``(facade, ledger)`` for ``oracle`` (see module docstring)."""
    ledger = Ledger()

    def _count(kind: str, cost: float, idx) -> None:
        ledger.total += cost * np.asarray(idx).size
        ledger.calls[kind] += 1

    class GuardedOracle:
        __slots__ = ()
        n_train = oracle.n_train
        shape = oracle.shape
        dtype = oracle.dtype
        budget = oracle.budget

        @property
        def evals(self) -> float:
            return oracle.evals

        @property
        def remaining(self) -> float:
            return oracle.remaining

        def value(self, x, idx):
            out = oracle.value(x, idx)
            _count("value", COST_VALUE, idx)
            return out

        def value_and_grad(self, x, idx):
            out = oracle.value_and_grad(x, idx)
            _count("value_and_grad", COST_GRADIENT, idx)
            return out

        def hvp(self, x, v, idx):
            out = oracle.hvp(x, v, idx)
            _count("hvp", COST_HVP, idx)
            return out

        def expectation(self, x, idx, hard: bool = False):
            out = oracle.expectation(x, idx, hard=hard)
            _count("expectation", COST_EXPECTATION, idx)
            return out

        def m_step(self, stats, x0, max_iter: int = 30):
            return oracle.m_step(stats, x0, max_iter=max_iter)

        def next_batch(self, size: int):
            return oracle.next_batch(size)

        def __repr__(self) -> str:
            return f"GuardedOracle(n_train={oracle.n_train}, evals={oracle.evals:g})"

    return GuardedOracle(), ledger


def check_ledger(oracle, ledger: Ledger, previous_evals: float) -> None:
    """Raise :class:`TamperingDetected` if the oracle's counter disagrees with the ledger."""
    if oracle.evals < previous_evals - 1e-9:
        raise TamperingDetected(f"tampering detected: cost counter decreased from {previous_evals:g} "
                                f"to {oracle.evals:g}")
    if abs(oracle.evals - ledger.total) > 1e-6 * max(1.0, ledger.total):
        raise TamperingDetected(f"tampering detected: oracle counter {oracle.evals:g} != "
                                f"harness ledger {ledger.total:g}")
