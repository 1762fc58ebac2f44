"""Leaderboard entries (one JSON per optimizer and problem) and their ranking.

An entry records the protocol's outcome for one optimizer on one problem:
the chosen hyperparameters, the tuning cost, and the seed runs.  Ranking is
by the mean NLL of the scoring split (further held-out images) at the full
budget when every entry's records carry it, else by the paper's test NLL
(always shown, with a bootstrap 95% confidence interval over seeds); paired
comparisons of adjacent entries (:mod:`bench.score.stats`) say which rank
differences are significant; suboptimality and the test-NLL gap against the
reference optimum (:mod:`bench.score.reference`) are shown beside them, plus the evaluations each needs to close
fixed fractions of the gap between the initial density's test NLL and the
ground truth's (50% and 90%; median over seeds; "never" if not reached).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from problems.data.io import atomic_write_text

from .entry import LeaderboardEntry
from .stats import adjacent_comparisons, format_comparison, summarize
from .text import markdown

GAP_FRACTIONS = (0.5, 0.9)


RANKED_RUN_STATUSES = ("finished", "diverged")


def entry_path(results_dir: Path, label: str, entry_id: str) -> Path:
    """``results/leaderboard/<label>/<entry_id>.json``; the id is assigned by the harness
    (a built-in's name, or ``sub-<random hex>`` for a submission), never by submitted code."""
    return Path(results_dir) / "leaderboard" / label / f"{entry_id.replace('/', '_').replace(':', '_')}.json"


def write_entry(path: Path, entry: LeaderboardEntry | dict) -> None:
    """Write an entry (checked first: :class:`bench.score.entry.LeaderboardEntry`) atomically."""
    entry = entry if isinstance(entry, LeaderboardEntry) else LeaderboardEntry.from_json(entry, path)
    atomic_write_text(path, json.dumps(entry.to_json(), indent=2, sort_keys=True, default=str))


def run_ranked(entry: dict) -> bool:
    """Whether an entry may be ranked: every seed run ended within budget with a consistent ledger
    (``finished``; ``diverged`` is an honest outcome scored as +inf) -- never ``error``/``timeout``."""
    return bool(entry["runs"]) and all(r["status"] in RANKED_RUN_STATUSES for r in entry["runs"])


def load_entries(results_dir: Path, label: str) -> tuple[list[dict], list[str]]:
    """Every readable entry of ``label`` (with ``entry_status``: ranked or why not) and a
    message per corrupt file (reported and skipped, never raised; :meth:`LeaderboardEntry.read`
    names the file and the field)."""
    entries, problems = [], []
    for path in sorted((Path(results_dir) / "leaderboard" / label).glob("*.json")):
        try:
            entry = LeaderboardEntry.read(path).to_json()
        except ValueError as exc:
            problems.append(f"unreadable entry skipped: {exc}")
            continue
        bad = sorted({r["status"] for r in entry["runs"]} - set(RANKED_RUN_STATUSES))
        entry["entry_status"] = "ranked" if run_ranked(entry) else f"unranked ({', '.join(bad) or 'no runs'})"
        entry["entry_id"] = path.stem          # the file name is the key (harness-assigned)
        entries.append(entry)
    return entries, problems


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean (resampling seeds)."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def evals_to_close_gap(parquet: Path, reference: float, fraction: float) -> float:
    """First checkpoint where ``test_nll - reference <= (1 - fraction) (test_nll_0 - reference)``."""
    table = pd.read_parquet(parquet)
    start = table["test_nll"].iloc[0]
    hit = table[table["test_nll"] - reference <= (1 - fraction) * (start - reference)]
    return float(hit["evals"].iloc[0]) if len(hit) else np.inf


def rank(results_dir: Path, label: str) -> pd.DataFrame:
    """One row per entry, best first."""
    rows = []
    entries, problems = load_entries(results_dir, label)
    for message in problems:
        print(f"warning: {message}", file=sys.stderr)
    for entry in entries:
        if entry["entry_status"] != "ranked":
            print(f"not ranked: {entry['entry_id']} ({entry['optimizer']}): {entry['entry_status']}", file=sys.stderr)
            continue
        try:
            scores = summarize(results_dir, entry)
        except ValueError as exc:              # a corrupt run record: reported, the entry left out
            print(f"not ranked: {entry['entry_id']} ({entry['optimizer']}): {exc}", file=sys.stderr)
            continue
        finals = np.array([r["final_test_nll"] if r["final_test_nll"] is not None else np.inf
                           for r in entry["runs"]])
        finite = finals[np.isfinite(finals)]
        lo, hi = bootstrap_ci(finite) if finite.size else (np.inf, np.inf)
        row = {"optimizer": entry["optimizer"], "submitted": entry.get("submitted", False),
               "test_nll": float(finite.mean()) if finite.size == len(finals) and finite.size else np.inf,
               "ci_low": lo, "ci_high": hi, "seeds": len(finals),
               "diverged": int(np.sum(~np.isfinite(finals))), "tuning_evals": entry["tuning_cost"],
               "hyperparameters": json.dumps(entry["hyperparameters"], sort_keys=True)}
        reference = entry.get("reference_test_nll")
        for frac in GAP_FRACTIONS:
            col = f"evals_to_{frac:.0%}"
            records = [Path(results_dir) / r["record"] for r in entry["runs"] if r.get("record")]
            hits = [evals_to_close_gap(p.with_suffix(".parquet"), reference, frac)
                    for p in records if reference is not None and p.exists()]
            row[col] = float(np.median(hits)) if hits else np.nan
        row.update(scores)
        row["budget_unspent"] = sum(_unspent(Path(results_dir) / r["record"]) for r in entry["runs"] if r.get("record"))
        row["entry_id"] = entry["entry_id"]       # harness-assigned: tells apart entries that look alike
        row["_entry"] = entry
        rows.append(row)
    return _ranked(pd.DataFrame(rows), results_dir)


def _unspent(meta_path: Path) -> bool:
    """Whether a run left more than one step's cost of its budget unspent (:func:`bench.run.records.budget_verdict`)."""
    try:
        return bool(json.loads(meta_path.read_text()).get("budget_unspent"))
    except (OSError, ValueError):
        return False


def _ranked(table: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """Sort by the scoring-split NLL when every finite entry has one (the larger held-out set),
    else by the paper's test NLL; then each entry against the next (:mod:`bench.score.stats`)."""
    if not len(table):
        return table
    finite = np.isfinite(table["test_nll"])
    by_score = bool(finite.any() and table.loc[finite, "score_nll"].notna().all())
    table["ranked_by"] = "scoring NLL" if by_score else "test NLL"
    table["rank_nll"] = np.where(finite, table["score_nll"] if by_score else table["test_nll"], np.inf)
    table = table.sort_values(["rank_nll", "optimizer"]).reset_index(drop=True)
    comps = adjacent_comparisons(results_dir, list(table["_entry"])) + [None]
    table["vs_next"] = [format_comparison(c) if c else "" for c in comps]
    table["significant_vs_next"] = [bool(c and c["significant"]) for c in comps]
    table = table.drop(columns="_entry")
    table.index = table.index + 1
    return table


def to_markdown(table: pd.DataFrame, label: str, budget: str | None = None) -> str:
    basis = table["ranked_by"].iloc[0] if len(table) and "ranked_by" in table else "test NLL"
    lines = [f"## Leaderboard: {label}" + (f" (budget {budget})" if budget else ""), "",
             f"Ranked by the mean {basis} over seeds at the full budget (lower is better; the scoring NLL is "
             "over the larger scoring split, the test NLL over the paper's 100 test images, bootstrap 95% CI over "
             "seeds). *vs next*: paired difference to the next entry on the same seeds and images, 95% interval, "
             "Holm-adjusted p; `*` = the rank difference is significant (bench/score/stats.py). Suboptimality: full "
             "training objective minus the reference optimum's (`cryoopt reference`); gap: test NLL minus the "
             "reference's. Evaluations are per-image gradients; the gap columns close test NLL(initial) - "
             "test NLL(ground truth).", "",
             "| rank | optimizer | scoring NLL | test NLL (100) | 95% CI | vs next | suboptimality | test-NLL gap "
             "| evals to close 50% of gap | evals to close 90% | tuning evals | seeds |",
             "|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "n/a" if np.isnan(v) else ("never" if not np.isfinite(v) else f"{v:,.0f}")  # noqa: E731
    num = lambda v, p=3: "n/a" if v is None or not np.isfinite(v) else f"{v:.{p}f}"  # noqa: E731
    for i, r in table.iterrows():
        name = f"**{markdown(r.optimizer)}** (submitted)" if r.submitted else markdown(r.optimizer)
        if r.get("budget_unspent"):          # it stopped early for lack of budget: not a like-for-like result
            name += f" (budget unspent in {r.budget_unspent} of {r.seeds} seeds)"
        nll = "diverged" if not np.isfinite(r.test_nll) else f"{r.test_nll:.3f}"
        ci = "" if not np.isfinite(r.ci_low) else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
        sub = num(r.get("suboptimality"), 4) + (" (beat the reference)" if r.get("beat_reference") else "")
        lines.append(f"| {i} | {name} | {num(r.get('score_nll'))} | {nll} | {ci} | {r.get('vs_next', '')} | {sub} | "
                     f"{num(r.get('test_nll_gap'))} | {fmt(r['evals_to_50%'])} | "
                     f"{fmt(r['evals_to_90%'])} | {r.tuning_evals:,.0f} | {r.seeds} |")
    if len(table) and table.get("beat_reference", pd.Series(dtype=bool)).any():
        lines += ["", "A run ended below the stored reference optimum; the reference was updated to it."]
    return "\n".join(lines) + "\n"
