"""Drawing Figs. 3, 4 and 6 from run records (and RELION's entry) for one problem."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from problems.data.io import read_mrc

from bench.run.records import truth_name
from bench.score.metrics import apply_alignment
from bench.report import figures
from bench.report.build import display_filter, fsc_table, snapshot_panels


def _truth(results_dir: str, label: str, metas: list[dict]) -> np.ndarray | None:
    path = Path(results_dir) / label / truth_name(metas[0]["problem_hash"]) if metas else None
    if path is None or not path.exists():
        path = Path(results_dir) / label / "ground_truth.mrc"       # records from before per-instance truths
    radius = next((m["band_radius"] for m in metas if m.get("band_radius")), None)
    if not path.exists():
        return None
    truth = read_mrc(path)[0]
    return display_filter(truth, radius) if radius else truth


#: What every density figure states: how its densities were put in the ground truth's frame.
ALIGNED = "aligned to the ground truth (the FSC's 6-DOF alignment: rotation, hand and shift)"


def _when(columns: list[str]) -> str:
    """``["5K", "50K", "final"]`` -> ``"after 5K and 50K evaluations and at the end"`` (what is drawn, no more)."""
    counts = [c for c in columns if c != "final"]
    parts = [f"after {' and '.join([', '.join(counts[:-1]), counts[-1]] if len(counts) > 1 else counts)} "
             f"evaluations"] if counts else []
    return " and ".join(parts + (["at the end"] if "final" in columns else []))


def final_table(rows: pd.DataFrame, metas: list[dict]) -> pd.DataFrame:
    """One line per run: optimizer, hyperparameters, status, evaluations, final and best test NLL."""
    out = []
    for m in metas:
        run = rows[rows.run_key == m["run_key"]].sort_values("evals")
        out.append({"optimizer": m["optimizer"], "hyperparameters": m["hyperparameters"], "status": m["status"],
                    "evals": m["evals"], "epochs": m["evals"] / m["n_train"] if m.get("n_train") else np.nan,
                    "final_test_nll": m["final_test_nll"], "best_test_nll": float(run.test_nll.min()),
                    "reference_test_nll": m.get("reference_test_nll"), "optimizer_seconds": m["optimizer_seconds"]})
    return pd.DataFrame(out).sort_values("optimizer", key=lambda s: s.map(figures.order(s).index))


def fig3(rows, metas, label: str, out: Path, note: str) -> list[Path]:
    ref = next((m["reference_test_nll"] for m in metas if m.get("reference_test_nll") is not None), None)
    stem = out / f"fig3-{label}"
    written = figures.save(figures.convergence(rows, f"Fig. 3 ({label}{note}): test NLL vs gradient evaluations",
                                               ref), stem)
    final_table(rows, metas).to_csv(stem.with_suffix(".csv"), index=False)
    return written + [stem.with_suffix(".csv")]


def fig4(metas, label: str, results_dir: str, out: Path, note: str) -> list[Path]:
    panels, columns = snapshot_panels(metas)
    truth = _truth(results_dir, label, metas)
    ordered = {n: panels[n] for n in figures.order(panels)}
    if truth is not None:
        ordered["ground truth"] = {columns[-1] if columns else "final": truth}
    stem = out / f"fig4-{label}"
    title = f"Fig. 4 ({label}{note}): densities {_when(columns)}, {ALIGNED}"
    written = figures.save(figures.isosurface_table(ordered, columns, title + " (isosurfaces)"),
                           stem.with_name(stem.name + "-isosurface"))
    written += figures.save(figures.central_slices(ordered, columns, title + " (central slices)"),
                            stem.with_name(stem.name + "-slices"))
    written += figures.save(figures.snapshot_grid(panels, truth, columns, title + " (projections)"), stem)
    fsc_table(metas).to_csv(stem.with_name(stem.name + "-fsc.csv"), index=False)
    return written + [stem.with_name(stem.name + "-fsc.csv")]


def fig6(rows, metas, label: str, results_dir: str, out: Path, relion: dict | None, note: str) -> list[Path]:
    panels, _ = snapshot_panels(metas)
    truth = _truth(results_dir, label, metas)
    radius = next((m["band_radius"] for m in metas if m.get("band_radius")), None)
    names = {"projection-matching": "projection matching, 5 it.", "em": "EM, 5 it.", "sgd": "SGD, 1 epoch"}
    finals = {names.get(n, n): panels[n]["final"] for n in ("projection-matching", "em", "sgd")
              if "final" in panels.get(n, {})}
    relion_tag = None
    fsc = fsc_table(metas)
    summary = final_table(rows, metas).merge(fsc.drop(columns=[c for c in ("evals", "seed") if c in fsc]),
                                             on="optimizer", how="left")
    if relion is not None:
        tag = f"RELION 3.1, 5 it.\n({relion['n_particles']:,} of {relion['n_train']:,} images)"
        fsc = relion.get("fsc") or {}
        if "rotation" in fsc:
            vol = apply_alignment(relion["map"], fsc["rotation"], fsc["mirrored"], fsc["shift"])
            finals[tag] = display_filter(vol, radius) if radius else vol
            relion_tag = tag
        summary = pd.concat([summary, pd.DataFrame([{
            "optimizer": "relion-3.1", "status": "finished", "evals": relion["n_particles"] * relion["iterations"],
            "epochs": relion["n_particles"] * relion["iterations"] / relion["n_train"],
            "final_test_nll": relion["test_nll"], "best_test_nll": relion["test_nll"],
            "optimizer_seconds": relion["seconds"], "relion_particles": relion["n_particles"],
            "relion_scale": relion["scale"], "relion_test_nll_unscaled": relion["test_nll_unscaled"],
            "resolution_fsc_0.5_A": fsc.get("resolution_0.5"), "resolution_fsc_0.143_A": fsc.get("resolution_0.143"),
            "aligned_correlation": fsc.get("correlation"), "fsc_band_mean": fsc.get("fsc_band_mean")}])],
            ignore_index=True)
    # the paper's order: projection matching, RELION, (our EM, another batch method), SGD; the truth last
    first = ["projection matching, 5 it.", relion_tag, "EM, 5 it.", "SGD, 1 epoch"]
    finals = {k: finals[k] for k in [*[f for f in first if f in finals], *[k for k in finals if k not in first]]}
    if truth is not None:
        finals["ground truth"] = truth
    stem = out / f"fig6-{label}"
    title = f"Fig. 6 ({label}{note}): batch methods after 5 iterations vs SGD after 1 epoch, {ALIGNED}"
    written = figures.save(figures.snapshot_grid({k: {"final": v} for k, v in finals.items() if k != "ground truth"},
                                                 truth, ["final"], title + " (projections)"), stem)
    written += figures.save(figures.isosurface_grid(finals, title + " (isosurfaces)"),
                            stem.with_name(stem.name + "-isosurface"))
    summary.to_csv(stem.with_suffix(".csv"), index=False)
    return written + [stem.with_suffix(".csv")]
