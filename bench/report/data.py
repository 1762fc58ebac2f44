"""Loading run records for reports."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.run.records import RunMeta


def display_name(optimizer: str, hyper: dict) -> str:
    """An optimizer's name in reports: an adapter (``torch``, ``optax``) names the optimizer it wraps in
    its ``optimizer`` hyperparameter, and ``torch (RAdam)`` and ``torch (SGD)`` are different curves."""
    inner = (hyper or {}).get("optimizer")
    return f"{optimizer} ({inner})" if isinstance(inner, str) and inner else optimizer


def instance_labels(metas: list[dict]) -> None:
    """Set ``meta["group"]``, the label a report files a run under: the problem label, plus the
    instance (``published, seed 0`` / ``scored <hash>``) when runs of one label used more than one
    (the secret scoring instance and the published one are different data: never one curve)."""
    hashes: dict[str, set] = {}
    for m in metas:
        hashes.setdefault(m["problem_label"], set()).add(m["problem_hash"])
    for m in metas:
        if len(hashes[m["problem_label"]]) == 1:
            m["group"] = m["problem_label"]
        else:
            m["group"] = f"{m['problem_label']} ({m.get('instance') or 'instance ' + m['problem_hash'][:8]})"


def group_slug(group: str) -> str:
    """A group label as a file name part: ``synthetic-tiny (scored 1a2b3c4d)`` -> ``synthetic-tiny-scored-1a2b3c4d``."""
    return "-".join("".join(c if c.isalnum() or c == "-" else " " for c in group).split())


def load_runs(results_dir: str | Path, label: str | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """All complete records under ``results_dir`` (optionally one problem label): rows + metadata.

    Each record is parsed by :class:`bench.run.records.RunMeta` (a file that is not a run record is
    skipped); the metadata are handed on in its JSON form (the record's keys) plus ``meta_path``,
    ``group`` (:func:`instance_labels`) and ``optimizer`` as :func:`display_name` (rows likewise,
    with a ``group`` column).
    """
    metas, tables = [], []
    for meta_path in sorted(Path(results_dir).rglob("*.json")):
        if "leaderboard" in meta_path.parts:
            continue
        try:
            record = RunMeta.read(meta_path)
        except (OSError, ValueError):       # not a run record (a manifest, a corrupt file)
            continue
        if label and record.problem_label != label:
            continue
        parquet = meta_path.with_suffix(".parquet")
        if not parquet.exists():
            continue
        meta = {**record.to_json(), "meta_path": str(meta_path)}
        meta["optimizer"] = display_name(meta["optimizer"], meta["hyperparameters"])
        metas.append(meta)
        table = pd.read_parquet(parquet)
        table["problem"] = meta["problem_label"]
        table["status"] = meta["status"]
        table["optimizer"] = meta["optimizer"]
        tables.append(table)
    instance_labels(metas)
    for meta, table in zip(metas, tables):
        table["group"] = meta["group"]
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return rows, metas


def curves_on_grid(rows: pd.DataFrame, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Each optimizer's runs interpolated (in log evals) onto ``grid``: name -> (n_runs, len(grid))."""
    out: dict[str, list] = {}
    for (name, key), run in rows[rows.evals > 0].groupby(["optimizer", "run_key"]):
        run = run.sort_values("evals")
        y = np.interp(np.log(grid), np.log(run.evals.to_numpy()), run.test_nll.to_numpy(),
                      left=np.nan, right=np.nan)
        last = run.evals.max()
        y[grid > last * 1.0001] = np.nan
        out.setdefault(name, []).append(y)
    return {k: np.array(v) for k, v in out.items()}
