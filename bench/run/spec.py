"""The two typed messages between the harness's modules: what to run and what came of it.

:class:`RunSpec` is built by the sweep config, the tuning protocol and the
figure reproducer, and consumed by :func:`bench.run.sweep.execute` (and the
sandboxed worker); :class:`RunSummary` is built by :func:`bench.run.runner.run`
(or, for a run that never produced a record, by :meth:`RunSummary.failed`)
and consumed by the sweep command, the tuning protocol and submissions.
Both are plain data with a JSON form (``to_dict`` / ``from_dict``) so they
travel to joblib / Dask workers and to child processes unchanged.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .records import STATUSES


@functools.lru_cache(maxsize=4)
def cached_problem(name: str, scale: str, data_seed: int, extra: tuple = ()):
    """``load_problem`` with the last few problems kept (a sweep reuses one problem for many runs)."""
    from problems import load_problem
    return load_problem(name, scale=scale, seed=data_seed, progress=False, **dict(extra))


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run (the record's key is derived from it and the problem).

    ``validation`` > 0 runs on a validation split of that many *training*
    images (the tuning protocol; the test images are never touched);
    ``extra`` holds further ``load_problem`` keywords.  ``hyper`` is given as
    written; the optimizer coerces it to its fields' types.
    """

    problem: str
    scale: str
    optimizer: str
    budget: str | float
    hyper: dict = field(default_factory=dict)
    seed: int = 0
    data_seed: int = 0
    results_dir: str = "results"
    validation: int = 0
    compare_truth: bool = True
    extra: dict = field(default_factory=dict)

    def load_problem(self):
        """The problem this run is on (the validation split when ``validation`` > 0)."""
        problem = cached_problem(self.problem, self.scale, self.data_seed, tuple(sorted(self.extra.items())))
        if self.validation:
            problem = problem.validation_split(self.validation, seed=self.data_seed)
        return problem

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        """The inverse of :meth:`to_dict`; an unknown key is an error (a typo must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"run spec: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class RunSummary:
    """What a run came to: its status (one of :data:`bench.run.records.STATUSES`), record and final test NLL.

    ``skipped``: an existing record was reused.  ``key`` and ``meta_path``
    are ``None`` when no record was written (a run killed by the time limit).
    """

    status: str
    key: str | None
    meta_path: Path | None
    final_test_nll: float | None
    skipped: bool = False
    message: str = ""
    spec: RunSpec | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"run status {self.status!r} is not one of {', '.join(STATUSES)}")

    @classmethod
    def failed(cls, spec: RunSpec, status: str, message: str = "") -> RunSummary:
        """A run that wrote no record (e.g. ``timeout``, or a worker that died)."""
        return cls(status, None, None, None, message=message, spec=spec)

    def with_spec(self, spec: RunSpec) -> RunSummary:
        return replace(self, spec=spec)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["meta_path"] = None if self.meta_path is None else str(self.meta_path)
        out["spec"] = None if self.spec is None else self.spec.to_dict()
        return out

    # A read-only mapping view of the JSON form (``summary["status"]``, ``summary.get("meta_path")``):
    # the isolated harness's summaries are plain dicts with the same keys, and code that handles
    # both (submissions, pick_best) reads them alike; code that has a RunSummary uses the attributes.
    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)

    @classmethod
    def from_dict(cls, data: dict) -> RunSummary:
        data = dict(data)
        if data.get("meta_path") is not None:
            data["meta_path"] = Path(data["meta_path"])
        if data.get("spec") is not None:
            data["spec"] = RunSpec.from_dict(data["spec"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
