"""cryoopt optimizers: built-ins, entry-point plug-ins and ``path/to/file.py:Class``.

``get_optimizer(name_or_path, **hyperparameters)`` returns an instance;
``available()`` lists what is installed.
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .adaptive import Adam, AdaGrad
from .base import (ORACLE_CALLS, Optimizer, OptimizerInfo, Range, coerce_hyperparameters, hyperparameters,
                   missing_requirements, needs)
from .em import EM, ProjectionMatching
from .hessian_free import HessianFree
from .hutchinson_sgd import HutchinsonSGD
from .momentum import Momentum, Nesterov
from .olbfgs import OLBFGS
from .sagd import SAGD
from .sgd import SGD
from .tonga import TONGA
from .optax_adapter import OptaxOptimizer
from .torch_adapter import TorchOptimizer

BUILTIN = {cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, TONGA, OLBFGS, HessianFree, Adam,
                                     SAGD, HutchinsonSGD, EM, ProjectionMatching, TorchOptimizer,
                                     OptaxOptimizer)}
PAPER_SEVEN = ("sgd", "adagrad", "momentum", "nesterov", "tonga", "olbfgs", "hessian-free")

__all__ = ["Optimizer", "Range", "OptimizerInfo", "hyperparameters", "available", "get_optimizer_class",
           "get_optimizer", "coerce_hyperparameters", "needs", "missing_requirements", "ORACLE_CALLS"]


def _plugins() -> dict:
    found = {}
    for ep in entry_points(group="cryoopt.optimizers"):
        found[ep.name] = ep
    return found


def available() -> dict[str, str]:
    """Name -> where it comes from ("built-in" or the entry point's module)."""
    out = {name: "built-in" for name in BUILTIN}
    for name, ep in _plugins().items():
        out.setdefault(name, f"entry point {ep.value}")
    return out


def _load_from_path(spec: str):
    path, _, cls_name = spec.rpartition(":")
    file = Path(path)
    if not file.exists():
        raise ValueError(f"optimizer file {file} not found")
    mod_name = f"cryoopt_plugin_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, cls_name):
        raise ValueError(f"{file} has no class {cls_name!r}")
    return getattr(module, cls_name)


def get_optimizer_class(spec: str):
    """Resolve a built-in name, an entry-point name or ``path/to/file.py:ClassName``."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    plugins = _plugins()
    if spec in plugins:
        return plugins[spec].load()
    if ".py:" in spec:
        return _load_from_path(spec)
    raise ValueError(f"unknown optimizer {spec!r}; installed: {', '.join(sorted(available()))}; "
                     f"or give path/to/file.py:ClassName")


def get_optimizer(spec: str, **hyper):
    """An instance of ``spec`` with ``hyper`` coerced to its fields' types (:func:`coerce_hyperparameters`).

    Raises ``ValueError`` for a bad hyperparameter or a missing optional
    package (``cls.requires``), before anything runs.
    """
    cls = get_optimizer_class(spec)
    for method in ("init", "step"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"optimizer {spec!r} has no {method}() method")
    missing = missing_requirements(cls)
    if missing:
        raise ValueError(f"optimizer {spec!r} needs the optional package(s) {', '.join(missing)} "
                         f"(e.g. pip install cryoopt[{missing[0]}])")
    hyper = coerce_hyperparameters(cls, hyper)
    try:
        return cls(**hyper)
    except TypeError as exc:
        raise TypeError(f"optimizer {spec!r}: bad hyperparameters {hyper} ({exc})") from exc
