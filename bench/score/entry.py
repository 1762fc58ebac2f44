"""Typed leaderboard entries: the JSON of ``results/leaderboard/<label>/<entry_id>.json``, checked on read.

An entry is written only by the harness (:mod:`bench.isolation.submit`) but
lives in a folder people edit, copy and merge.  :meth:`LeaderboardEntry.read`
turns a corrupt or hand-edited file into one :class:`ValueError` that names
the file and the field (``results/leaderboard/x/sub-1.json: field
'tuning_cost': expected a number, got 'abc'``) instead of a traceback deep in
the ranking.  The JSON keys are the dataclass fields (those of today's
files); keys a newer writer adds are kept in ``extra`` and written back at
the top level, as :class:`bench.run.records.RunMeta` does for records.

:func:`check_fields` is the one type checker, shared with the isolation
harness's run record (:mod:`bench.isolation.record`).
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path, PurePosixPath

#: The run statuses of :data:`bench.run.records.STATUSES` (repeated here: ``bench.score`` comes before ``bench.run``).
RUN_STATUSES = ("finished", "diverged", "error", "interrupted", "timeout")
_KINDS = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float), "dict": (dict,), "list": (list,),
          "None": (type(None),)}
_NAMES = {"str": "a string", "bool": "true or false", "int": "an integer", "float": "a number",
          "dict": "an object", "list": "a list", "None": "null"}


def _kind_ok(value, kind: str) -> bool:
    if kind in ("int", "float") and isinstance(value, bool):
        return False
    if kind == "float" and isinstance(value, float) and math.isnan(value):
        return True                       # JSON NaN is how a missing score was written before
    return isinstance(value, _KINDS[kind])


def read_json(path: str | Path, what: str):
    """The JSON in ``path``; one ``ValueError("<path>: not a readable <what> (<reason>)")`` for a missing,
    undecodable or absurdly nested file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable {what} ({exc})") from None


def check_fields(cls, data, source: str | Path, types: dict | None = None) -> None:
    """Raise ``ValueError("<source>: field '<name>': expected ..., got ...")`` unless ``data`` fits ``cls``.

    ``cls`` is a dataclass whose annotations are simple unions of ``str``,
    ``bool``, ``int``, ``float``, ``dict``, ``list`` and ``None`` (``list[X]`` counts as a list).
    Required fields (no default) must be present; extra keys are allowed.
    ``types`` overrides a field's annotation (same syntax) where the JSON is looser than the class says.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a JSON object")
    for f in fields(cls):
        if f.name in ("extra", "given"):
            continue
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{source}: field {f.name!r} is missing")
            continue
        kinds = [k.strip().split("[")[0] for k in str((types or {}).get(f.name, f.type)).split("|")]
        value = data[f.name]
        if not any(_kind_ok(value, k) for k in kinds):
            want = " or ".join(_NAMES[k] for k in kinds)
            raise ValueError(f"{source}: field {f.name!r}: expected {want}, got {str(value)[:40]!r}")


@dataclass(frozen=True)
class EntryRun:
    """One seed run of an entry at the full budget on the scored instance."""

    status: str
    seed: int | None = None
    final_test_nll: float | None = None
    record: str | None = None             # the run record's JSON, relative to the results folder
    extra: dict = field(default_factory=dict)
    given: frozenset | None = field(default=None, repr=False, compare=False)   # keys read (None: all)

    @classmethod
    def from_json(cls, data, source: str) -> EntryRun:
        check_fields(cls, data, source)
        if data["status"] not in RUN_STATUSES:
            raise ValueError(f"{source}: field 'status': {str(data['status'])[:40]!r} is not one of "
                             f"{', '.join(RUN_STATUSES)}")
        record = data.get("record")
        if record is not None and (PurePosixPath(record).is_absolute() or ".." in PurePosixPath(record).parts):
            raise ValueError(f"{source}: field 'record': {record[:80]!r} must be a path inside the results folder")
        return _build(cls, data)

    def to_json(self) -> dict:
        return _dump(self)


@dataclass(frozen=True)
class LeaderboardEntry:
    """The protocol's outcome for one optimizer on one problem (:mod:`bench.isolation.submit`)."""

    optimizer: str
    runs: list
    hyperparameters: dict
    tuning_cost: float                    # evaluations allotted to the tuning trials (issue 22)
    entry_id: str | None = None
    optimizer_spec: str | None = None
    submitted: bool = False
    problem: str | None = None
    problem_hash: str | None = None
    budget: str | float | None = None
    tuning_budget: str | float | None = None
    trials: int | None = None
    reference_test_nll: float | None = None
    seconds: float | None = None
    status: str | None = None
    extra: dict = field(default_factory=dict)
    given: frozenset | None = field(default=None, repr=False, compare=False)   # keys read (None: all)

    @classmethod
    def from_json(cls, data, source: str | Path = "entry") -> LeaderboardEntry:
        check_fields(cls, data, source)
        runs = [EntryRun.from_json(r, f"{source}: runs[{i}]") for i, r in enumerate(data["runs"])]
        return _build(cls, {**data, "runs": runs})

    @classmethod
    def read(cls, path: str | Path) -> LeaderboardEntry:
        """The entry in ``path``; ``ValueError`` naming the file (and the field) if it is not one."""
        return cls.from_json(read_json(path, "JSON entry"), path)

    def to_json(self) -> dict:
        out = _dump(self)
        out["runs"] = [r.to_json() if isinstance(r, EntryRun) else r for r in self.runs]
        return out


def _build(cls, data: dict):
    names = {f.name for f in fields(cls)} - {"extra", "given"}
    return cls(**{k: v for k, v in data.items() if k in names}, extra={k: v for k, v in data.items() if k not in names},
               given=frozenset(data))


def _dump(obj) -> dict:
    """The JSON form: the keys that were read (an entry read and written back is unchanged), or all fields."""
    out = {f.name: getattr(obj, f.name) for f in fields(obj)
           if f.name not in ("extra", "given") and (obj.given is None or f.name in obj.given)}
    clash = set(out) & set(obj.extra)
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} shadow fields")
    return {**out, **obj.extra}
