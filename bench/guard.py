"""What an optimizer is handed: a facade of the oracle, a cost ledger, and a sandbox hook.

* :func:`guarded` wraps a :class:`problems.oracle.CountingOracle` in an object
  with only the public API (``__slots__``, no attributes to overwrite, no
  private methods); the real oracle is reachable only through closures.
* Every call through the facade is also entered in a ledger kept by the
  harness; after each step the runner checks that the oracle's counter
  equals the ledger and never decreases, so resetting or lowering the real
  counter is detected (status ``error``, "tampering detected").
* :func:`install_sandbox` (used by submission workers, which run in their
  own process) adds an audit hook that, while an optimizer step runs,
  refuses file access under the data cache and the results directory,
  garbage-collector and frame introspection, and ``__code__``/frame attribute
  tricks.  Python cannot be sandboxed completely; what is not prevented is
  detected by the ledger, and the record says which.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

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


_DENIED_EVENTS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._getframe",
                  "sys._current_frames", "object.__getattr__", "ctypes.", "subprocess.Popen", "os.system",
                  "os.exec", "os.posix_spawn", "os.fork", "mmap.__new__")


def install_sandbox(protected: list[Path]) -> "SandboxSwitch":
    """Add the audit hook (once per process); returns the switch the runner turns on around steps."""
    protected_roots = [str(Path(p).resolve()) for p in protected]
    switch = SandboxSwitch()

    def hook(event: str, args: tuple) -> None:
        if not switch.active:
            return
        if event.startswith(_DENIED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed inside an optimizer step")
        if event in ("open", "os.listdir", "os.scandir", "shutil.copyfile", "os.rename", "os.remove"):
            target = args[0] if args else None
            if isinstance(target, (str, bytes, os.PathLike)):
                path = os.path.realpath(os.fsdecode(target))
                if any(path == root or path.startswith(root + os.sep) for root in protected_roots):
                    raise PermissionError(f"sandbox: {event} of {path} is not allowed inside an optimizer step")

    sys.addaudithook(hook)
    return switch


class SandboxSwitch:
    """On while an optimizer step runs (set by the runner)."""

    __slots__ = ("active",)

    def __init__(self):
        self.active = False
