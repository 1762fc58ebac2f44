"""The isolation harness's run record: :class:`bench.run.records.RunMeta` plus what only an isolated run has.

The JSON keys are those the harness wrote before the record was typed
(issue 20): the runner's fields, then ``record_name`` (the entry id the runs
are filed under), ``isolated``, ``ledger`` (the server's own sum of charged
costs) and ``shared_memory_calls``; environment and scores stay top-level
extras.  :meth:`IsolatedRunMeta.read` checks every field's type, so a
corrupt or hand-edited record is one ``ValueError`` naming the file and the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.run.records import RunMeta
from bench.score.entry import check_fields, read_json


@dataclass(frozen=True)
class IsolatedRunMeta(RunMeta):
    """A sandboxed run's record metadata (see the module docstring)."""

    record_name: str = ""
    isolated: bool = True
    ledger: float | None = None
    shared_memory_calls: int = 0

    @classmethod
    def read(cls, meta_path: str | Path) -> IsolatedRunMeta:
        """The record in ``meta_path``; ``ValueError("<file>: field '<name>': ...")`` if it is not one."""
        data = read_json(meta_path, "run record")
        check_fields(cls, data, meta_path, {"problem_version": "str | int"})   # versions are written as integers
        return cls.from_json(data)
