"""Run records: one long-format parquet table + one JSON metadata file per run.

A record's path is derived from a hash of everything that defines the run
(problem content hash, optimizer, hyperparameters, seed, budget), so the same
run is never done twice.  Files are written to a temporary name and renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from problems.data.io import atomic_path, atomic_write_text

#: Every status a run can end with (records, summaries, leaderboard entries):
#: ``finished`` -- the budget was spent; ``diverged`` -- the density became
#: non-finite (or the oracle refused one: :class:`problems.NonFiniteInput`);
#: ``error`` -- an exception, tampering or a failed worker, with the message;
#: ``interrupted`` -- Ctrl-C (redone on resume); ``timeout`` -- a sandboxed
#: submission killed by its time limit (no record).
STATUSES = ("finished", "diverged", "error", "interrupted", "timeout")


@dataclass(frozen=True)
class RunMeta:
    """A run record's metadata: the JSON beside its parquet table (the keys are the fields).

    Built once by the runner, read back by :meth:`read` wherever a record is
    consumed.  ``extra`` holds the environment (package version, git commit,
    machine) and any further keys a writer adds; they are written at the top
    level of the JSON, so older records and readers see the same keys as before.
    """

    run_key: str
    problem: str
    problem_label: str
    problem_version: str
    problem_hash: str
    optimizer: str
    optimizer_spec: str
    hyperparameters: dict
    seed: int
    budget: float
    evals: float
    status: str
    message: str
    final_test_nll: float | None
    reference_test_nll: float | None = None
    pixel_size_angstrom: float | None = None
    band_radius: float | None = None
    n_train: int | None = None
    optimizer_seconds: float = 0.0
    snapshots: dict = field(default_factory=dict)
    fsc: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"run {self.run_key}: status {self.status!r} is not one of {', '.join(STATUSES)}")

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        clash = set(out) & set(self.extra)
        if clash:
            raise ValueError(f"run {self.run_key}: extra keys {sorted(clash)} shadow record fields")
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict) -> RunMeta:
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})

    @classmethod
    def read(cls, meta_path: str | Path) -> RunMeta:
        """The metadata of a complete record; ``ValueError`` naming the file if it is not one."""
        try:
            return cls.from_json(json.loads(Path(meta_path).read_text()))
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ValueError(f"{meta_path}: not a run record ({exc})") from exc


def run_key(problem_hash: str, optimizer: str, hyper: dict, seed: int, budget: float,
            source: str | None = None) -> str:
    """The record's name: a hash of everything that defines the run.

    ``source``: the content hash of a file plug-in's source (:func:`plugin_source_hash`), so an edited
    ``file.py:Class`` is a new run, not the old record; ``None`` (built-ins, entry points) leaves the
    key as it was before the source was part of it.
    """
    fields_ = {"problem": problem_hash, "optimizer": optimizer, "hyper": hyper, "seed": seed, "budget": budget}
    if source is not None:
        fields_["source"] = source
    text = json.dumps(fields_, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plugin_source_hash(optimizer_spec: str) -> str | None:
    """sha256 of the file of a ``path/to/file.py:Class`` spec (``None`` for a registered name)."""
    path, sep, _ = str(optimizer_spec).rpartition(":")
    if not sep or not path.endswith(".py") or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def budget_verdict(status: str, message: str, steps: int, evals: float, budget: float,
                   max_step_cost: float) -> tuple[str, str, dict]:
    """Say when a ``finished`` run did not really use its budget; returns ``(status, message, extra)``.

    * no completed step (the first step was refused part-way, e.g. Hessian-free whose CG needs more
      than the whole tiny budget): ``error``, since the density is the initial one and must not rank;
    * more than one step's cost left unspent (``budget - evals > max_step_cost``: the next step asked
      for more than any step before it): ``finished`` with a message, and ``budget_unspent`` in the
      record for the leaderboard to mark.

    ``extra`` (written into the record): ``steps``, ``unspent_evals`` and ``budget_unspent``.
    """
    unspent = max(float(budget) - float(evals), 0.0)
    extra = {"steps": int(steps), "unspent_evals": unspent, "budget_unspent": False}
    if status != "finished":
        return status, message, extra
    if steps == 0:
        return "error", (f"no step completed: {evals:g} of {budget:g} evaluations were spent inside the first "
                         f"step, which did not fit the budget; the density is the initial one (raise the budget "
                         f"or make a step cheaper)"), extra
    if unspent > max_step_cost:
        extra["budget_unspent"] = True
        return status, (f"budget not used: {unspent:g} of {budget:g} evaluations left unspent, more than the "
                        f"costliest of {steps} steps ({max_step_cost:g}); the next step asked for more than "
                        f"was left"), extra
    return status, message, extra


def user_frames(exc: BaseException, n: int = 3, harness: tuple[str, ...] = ()) -> str:
    """The last ``n`` frames (file, line, function, code) of ``exc``'s traceback outside the harness.

    ``harness``: folder prefixes whose frames are left out (the runner's own); the rest is the
    optimizer's code (a plug-in file, a built-in, or a library it calls).
    """
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not any(f.filename.startswith(h) for h in harness)]
    return "".join(f"\n  at {f.filename}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
                   for f in frames[-n:])


def instance_name(metadata: dict) -> str:
    """Which instance of a problem a run used: ``"published, seed N"`` (seeds below 1000, the ones the
    repository documents) or ``"scored <hash>"`` (a secret-seed instance, named by its content hash,
    never by its seed; :func:`bench.isolation.submit.secret_seed`)."""
    seed = metadata.get("seed")
    if seed is not None and int(seed) < 1000:
        return f"published, seed {int(seed)}"
    return f"scored {str(metadata.get('content_hash', ''))[:8]}"


def truth_name(problem_hash: str) -> str:
    """The ground truth's file beside a problem's records: one per instance (instances differ in it)."""
    return f"ground_truth-{problem_hash[:12]}.mrc"


def record_paths(results_dir: Path, problem_label: str, optimizer: str, key: str) -> tuple[Path, Path]:
    base = Path(results_dir) / problem_label / optimizer.replace("/", "_").replace(":", "_")
    return base / f"{key}.parquet", base / f"{key}.json"


def write_record(parquet: Path, meta_path: Path, rows: list[dict], meta: RunMeta | dict) -> None:
    """Write the table first and the metadata last: a run is complete iff its JSON exists."""
    meta = (meta if isinstance(meta, RunMeta) else RunMeta.from_json(meta)).to_json()   # checks the status
    with atomic_path(parquet) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, engine="pyarrow", index=False)
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str))


def environment() -> dict:
    """Package version, git commit and machine, for the record's metadata."""
    try:
        pkg = version("cryoopt")
    except PackageNotFoundError:
        pkg = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"package_version": pkg, "git_commit": commit, "machine": platform.machine(),
            "python": platform.python_version(), "hostname": platform.node(), "cpus": os.cpu_count()}
