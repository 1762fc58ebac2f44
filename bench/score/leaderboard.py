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
    # a resubmission of the same code and settings has the same run keys: list it once (the earliest entry)
    first: dict[tuple, str] = {}
    for entry in sorted(entries, key=lambda e: (e.get("created", ""), e["entry_id"])):
        keys = tuple(sorted(Path(r["record"]).stem for r in entry["runs"] if r.get("record")))
        same = (entry["optimizer"], json.dumps(entry["hyperparameters"], sort_keys=True), keys)
        if keys and same in first:
            entry["entry_status"] = f"duplicate of {first[same]}"
        else:
            first.setdefault(same, entry["entry_id"])
    return entries, problems


def withdraw(results_dir: Path, entry_id: str, label: str | None = None) -> Path:
    """Move an entry out of the leaderboard into ``<label>/withdrawn/`` (kept, never deleted); returns where."""
    root = Path(results_dir) / "leaderboard"
    found = [p for p in root.glob(f"{label or '*'}/*.json") if p.stem == entry_id]
    if not found:
        raise ValueError(f"no leaderboard entry {entry_id!r} under {root}{' / ' + label if label else ''}")
    if len(found) > 1:
        raise ValueError(f"entry {entry_id!r} is on several problems ({', '.join(p.parent.name for p in found)}): "
                         f"name one with --problem")
    dest = found[0].parent / "withdrawn" / found[0].name
    dest.parent.mkdir(exist_ok=True)
    found[0].rename(dest)
    return dest


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
        row = {"entry_id": entry["entry_id"], "optimizer": entry["optimizer"], "submitted": entry.get("submitted", False),
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
        row["_scores"] = [v for v in (_record_value(Path(results_dir) / r["record"], "score_nll")
                                      for r in entry["runs"] if r.get("record")) if v is not None]
        row["_entry"] = entry
        rows.append(row)
    return _ranked(pd.DataFrame(rows), results_dir)


def _record_value(meta_path: Path, key: str):
    try:
        value = json.loads(meta_path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, (int, float)) and np.isfinite(value) else None


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
    if by_score:            # the interval shown is for the quantity ranked: the scoring NLL over seeds
        cis = [bootstrap_ci(np.array(v)) if len(v) and np.isfinite(r) else (np.inf, np.inf)
               for v, r in zip(table["_scores"], table["rank_nll"])]
        table["ci_low"], table["ci_high"] = [c[0] for c in cis], [c[1] for c in cis]
    table = table.sort_values(["rank_nll", "optimizer"]).reset_index(drop=True)
    comps = adjacent_comparisons(results_dir, list(table["_entry"])) + [None]
    table["vs_next"] = [format_comparison(c) if c else "" for c in comps]
    table["significant_vs_next"] = [bool(c and c["significant"]) for c in comps]
    table = table.drop(columns=["_entry", "_scores"])
    table.index = table.index + 1
    return table


def display_rows(table: pd.DataFrame, escape=lambda text: text) -> pd.DataFrame:
    """The leaderboard as shown (Markdown and HTML): one name per quantity, the CI beside the ranked
    quantity, each entry's id and tuned hyperparameters, and no column that is n/a for every entry."""
    basis = table["ranked_by"].iloc[0] if len(table) and "ranked_by" in table else "test NLL"
    other = "test NLL" if basis == "scoring NLL" else "scoring NLL"
    fmt = lambda v: "n/a" if pd.isna(v) else ("never" if not np.isfinite(v) else f"{v:,.0f}")  # noqa: E731
    num = lambda v, p=3: "n/a" if v is None or pd.isna(v) or not np.isfinite(v) else f"{v:.{p}f}"  # noqa: E731
    rows = []
    for i, r in table.iterrows():
        name = f"**{escape(r.optimizer)}** (submitted)" if r.submitted else escape(r.optimizer)
        if r.get("budget_unspent"):          # it stopped early for lack of budget: not a like-for-like result
            name += f" (budget unspent in {r.budget_unspent} of {r.seeds} seeds)"
        values = {"scoring NLL": num(r.get("score_nll")),
                  "test NLL": "diverged" if not np.isfinite(r.test_nll) else f"{r.test_nll:.3f}"}
        rows.append({"rank": str(i), "id": f"`{r.get('entry_id', '')}`", "optimizer": name, basis: values[basis],
                     "95% CI": "" if not np.isfinite(r.ci_low) else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
                     "vs next": r.get("vs_next", ""), other: values[other],
                     "suboptimality": num(r.get("suboptimality"), 4) + (" (beat the reference)"
                                                                      if r.get("beat_reference") else ""),
                     "test-NLL gap": num(r.get("test_nll_gap")), "evals to close 50% of gap": fmt(r["evals_to_50%"]),
                     "evals to close 90% of gap": fmt(r["evals_to_90%"]), "tuning evals": f"{r.tuning_evals:,.0f}",
                     "seeds": str(r.seeds), "hyperparameters": escape(r.hyperparameters)})
    shown = pd.DataFrame(rows)
    return shown[[c for c in shown.columns if not (shown[c] == "n/a").all()]] if len(shown) else shown


def to_markdown(table: pd.DataFrame, label: str, budget: str | None = None) -> str:
    basis = table["ranked_by"].iloc[0] if len(table) and "ranked_by" in table else "test NLL"
    lines = [f"## Leaderboard: {label}" + (f" (budget {budget})" if budget else ""), "",
             f"Ranked by the mean {basis} over seeds at the full budget (lower is better; the scoring NLL is "
             "over the larger scoring split, the test NLL over the paper's 100 test images); 95% CI: bootstrap "
             f"over seeds of the {basis}. *vs next*: paired difference to the next entry on the same seeds and "
             "images, 95% interval, Holm-adjusted p; `*` = the rank difference is significant "
             "(bench/score/stats.py). Suboptimality: full training objective minus the reference optimum's "
             "(`cryoopt reference`); test-NLL gap: test NLL minus the reference's. Evaluations are per-image "
             "gradients; the gap columns close test NLL(initial) - test NLL(ground truth). Columns that are n/a "
             "for every entry are left out; `cryoopt leaderboard --withdraw ID` removes an entry.", ""]
    shown = display_rows(table, markdown)
    if len(shown):
        right = {"rank", basis, "scoring NLL", "test NLL", "suboptimality", "test-NLL gap", "tuning evals", "seeds"}
        lines += ["| " + " | ".join(shown.columns) + " |",
                  "|" + "|".join("---:" if c in right or c.startswith("evals") else "---" for c in shown.columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in shown.itertuples(index=False)]
    if len(table) and table.get("beat_reference", pd.Series(dtype=bool)).any():
        lines += ["", "A run ended below the stored reference optimum; the reference was updated to it."]
    return "\n".join(lines) + "\n"
