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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from problems.data.io import atomic_path, atomic_write_text

STATUSES = ("finished", "diverged", "error", "interrupted")


def run_key(problem_hash: str, optimizer: str, hyper: dict, seed: int, budget: float) -> str:
    text = json.dumps({"problem": problem_hash, "optimizer": optimizer, "hyper": hyper,
                       "seed": seed, "budget": budget}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_paths(results_dir: Path, problem_label: str, optimizer: str, key: str) -> tuple[Path, Path]:
    base = Path(results_dir) / problem_label / optimizer.replace("/", "_").replace(":", "_")
    return base / f"{key}.parquet", base / f"{key}.json"


def write_record(parquet: Path, meta_path: Path, rows: list[dict], meta: dict) -> None:
    """Write the table first and the metadata last: a run is complete iff its JSON exists."""
    with atomic_path(parquet) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, engine="pyarrow", index=False)
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_record(meta_path: Path) -> tuple[pd.DataFrame, dict]:
    meta = json.loads(Path(meta_path).read_text())
    return pd.read_parquet(Path(meta_path).with_suffix(".parquet")), meta


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
