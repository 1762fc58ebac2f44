"""Two leaderboard entries on one problem: the leaderboard's paired statistics, with a plot.

``Delta = NLL_A - NLL_B`` per image (scoring split when both have it, else the
test images), on the seeds both entries ran; the 95% interval and p-value
cross seeds with images and the Wilcoxon signed-rank p-value is over images
(:func:`bench.score.stats.paired_comparison`, the statistic the leaderboard's
*vs next* column shows).  The plot: the per-image differences averaged over
seeds (left; negative: A better) and both entries' test-NLL curves (right).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.score.leaderboard import load_entries
from bench.score.stats import _differences, entry_outcomes, paired_comparison
from . import figures


def find_entry(results_dir: Path, label: str, name: str) -> dict:
    """The entry with id ``name``, else the one entry of optimizer ``name`` (ambiguity is an error)."""
    entries, _ = load_entries(Path(results_dir), label)
    by_id = [e for e in entries if e["entry_id"] == name]
    by_optimizer = [e for e in entries if e["optimizer"] == name]
    found = by_id or by_optimizer
    if len(found) != 1:
        known = ", ".join(f"{e['entry_id']} ({e['optimizer']})" for e in entries) or "none"
        why = "no entry" if not found else "several entries"
        raise ValueError(f"{why} {name!r} on {label}: give an entry id; entries: {known}")
    return found[0]


def compare(results_dir: str | Path, label: str, a: str, b: str, out: str | Path) -> tuple[dict, list[Path]]:
    """The paired comparison of entries ``a`` and ``b`` on ``label`` and the files of its plot."""
    results_dir, out = Path(results_dir), Path(out)
    ea, eb = find_entry(results_dir, label, a), find_entry(results_dir, label, b)
    oa, ob = entry_outcomes(results_dir, ea), entry_outcomes(results_dir, eb)
    result = {"problem": label, "a": ea["entry_id"], "b": eb["entry_id"], **paired_comparison(oa, ob)}
    d, _ = _differences(oa, ob)
    fig, (left, right) = figures.plt.subplots(1, 2, figsize=(11, 4))
    if d.size and np.isfinite(d).all():
        left.hist(d.mean(axis=0), bins=min(40, max(5, d.shape[1] // 5)), color="0.6")
        left.axvline(result["delta"], color="k", label=f"mean {result['delta']:+.3f}")
        left.axvspan(result["ci_low"], result["ci_high"], color="C3", alpha=0.25, label="95% interval")
        left.axvline(0.0, color="k", ls=":", lw=1)
        figures.legend_outside(left)
    left.set_xlabel(f"NLL({ea['entry_id']}) - NLL({eb['entry_id']}) per image ({result['basis']})")
    left.set_ylabel("images")
    left.set_title(f"{label}: {ea['entry_id']} vs {eb['entry_id']}")
    for entry in (ea, eb):
        for run in entry["runs"]:
            parquet = (results_dir / run["record"]).with_suffix(".parquet") if run.get("record") else None
            if parquet is not None and parquet.exists():
                t = pd.read_parquet(parquet)
                right.plot(t.evals, t.test_nll, color=figures.colour(entry["optimizer"]), lw=1.2,
                           label=f"{entry['entry_id']} seed {run['seed']}")
    right.set_xscale("log")
    right.set_xlabel("per-image gradient evaluations")
    right.set_ylabel("held-out test NLL")
    right.set_title("test NLL of every seed")
    figures.legend_outside(right)
    fig.tight_layout()
    return result, figures.save(fig, out / f"compare-{label}-{ea['entry_id']}-{eb['entry_id']}")
