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

Capability flags (class attributes, read by the harness and the tests
instead of lists of names): ``needs``, the oracle calls ``step`` makes (a
subset of :data:`ORACLE_CALLS`; an oracle that lacks one cannot run the
optimizer -- e.g. the quadratic test oracle has no ``expectation``), and
``requires``, the optional packages it imports (missing ones are a clear
error before a run starts; built-in leaderboard entries skip such
optimizers so they are the same on every machine).  A plug-in that declares
neither is assumed to need every call and no optional package.
"""
from __future__ import annotations

import importlib.util
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
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


ORACLE_CALLS = frozenset({"value", "value_and_grad", "hvp", "expectation", "m_step", "next_batch"})


@runtime_checkable
class Optimizer(Protocol):
    name: ClassVar[str]
    search_space: ClassVar[dict[str, Range]]
    needs: ClassVar[frozenset[str]]         # oracle calls step() makes (within ORACLE_CALLS)
    requires: ClassVar[tuple[str, ...]]     # optional packages (import names) it needs

    def init(self, x0: np.ndarray, info: OptimizerInfo, rng: np.random.Generator) -> Any: ...

    def step(self, x: np.ndarray, state: Any, oracle: Oracle,
             rng: np.random.Generator) -> tuple[np.ndarray, Any]: ...


def step_scale(info: OptimizerInfo) -> float:
    """``1 / L`` for the harness's curvature scale ``L`` (:class:`problems.protocol.OptimizerInfo`).

    Built-in step sizes are relative: ``eta = lr * step_scale(info)``, so
    ``lr = 1`` is gradient descent's ``1/L`` step whatever the box, band or
    data.  Without a measured curvature (an oracle that offers none) the
    scale is 1 and ``lr`` is absolute.
    """
    curvature = getattr(info, "curvature", None)
    if curvature is None:
        return 1.0
    if not (np.isfinite(curvature) and curvature > 0):
        raise ValueError(f"OptimizerInfo.curvature must be a positive number, got {curvature!r}")
    return 1.0 / float(curvature)


def hyperparameters(opt) -> dict:
    """The optimizer's hyperparameters (its dataclass fields) as a plain dict."""
    return {f.name: getattr(opt, f.name) for f in fields(opt)}


def needs(cls) -> frozenset[str]:
    """The oracle calls an optimizer class declares (all of them when it declares none)."""
    declared = frozenset(getattr(cls, "needs", ORACLE_CALLS))
    unknown = declared - ORACLE_CALLS
    if unknown:
        raise ValueError(f"optimizer {getattr(cls, 'name', cls)!r}: unknown oracle calls in `needs`: "
                         f"{sorted(unknown)} (known: {sorted(ORACLE_CALLS)})")
    return declared


def missing_requirements(cls) -> tuple[str, ...]:
    """The optional packages in ``cls.requires`` that are not installed."""
    return tuple(m for m in getattr(cls, "requires", ()) if importlib.util.find_spec(m) is None)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(value, kind, where: str):
    """``value`` as an instance of the annotation ``kind`` (float, int, bool, str, X | None, containers)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if isinstance(value, (str, int)) and text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    base = origin or kind
    if isinstance(base, type) and base is not Any and not isinstance(value, base):
        raise ValueError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}")
    return value


def coerce_hyperparameters(cls, hyper: dict) -> dict:
    """``hyper`` with each value converted to its dataclass field's type.

    So ``lr=1`` and ``lr=1.0`` (from ``--set`` or a sweep file) build the same
    optimizer -- and hence the same run key -- and ``lr=abc``, an unknown
    name or ``batch_size=2.5`` is a ``ValueError`` naming the field before
    anything runs.  Booleans accept true/false, yes/no, on/off, 1/0.  A class
    that is not a dataclass gets ``hyper`` unchanged.
    """
    if not is_dataclass(cls):
        return dict(hyper)
    name = getattr(cls, "name", cls.__name__)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(hyper) - set(known))
    if unknown:
        raise ValueError(f"optimizer {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                         f"its hyperparameters: {', '.join(known) or 'none'}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:           # an annotation that cannot be resolved: trust the values
        hints = {}
    return {k: _coerce(v, hints.get(k, Any), f"optimizer {name!r}: hyperparameter {k}") for k, v in hyper.items()}

