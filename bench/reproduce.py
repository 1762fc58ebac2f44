"""One command per paper figure: run (or reuse) exactly the runs it needs, then draw it.

Settings follow Punjani & Brubaker 2015 Sec. 4: the seven optimizers with
their default (paper) schedules, minibatch 100 (HF: 300 with 5 CG
iterations), 10 epochs of per-image gradient evaluations, the same random
initial density (seed 0) and batch order for all.  Fig. 6 compares iterative
projection matching and batch EM after 5 iterations (5 epochs) with SGD
after 1 epoch.  Hyperparameters are the built-in defaults (the paper tuned
learning rates by hand; ``cryoopt submit`` runs the tuning protocol).
"""
from __future__ import annotations

from pathlib import Path

from optimizers import PAPER_SEVEN

from .report import figures
from .report.build import display_filter, fsc_table, snapshot_panels
from .report.data import load_runs
from .records import RunMeta
from .spec import RunSpec
from .sweep import run_specs

FIGURES = ("fig3", "fig4", "fig6")


def _specs(figure: str, scale: str, results_dir: str) -> list[RunSpec]:
    def spec(name: str, budget: str) -> RunSpec:
        return RunSpec(problem="synthetic", scale=scale, optimizer=name, budget=budget, results_dir=results_dir)
    if figure in ("fig3", "fig4"):
        return [spec(name, "10epochs") for name in PAPER_SEVEN]
    return [spec(name, "5epochs") for name in ("projection-matching", "em")] + [spec("sgd", "1epoch")]


def reproduce(figure: str, scale: str = "small", results_dir: str = "results", out_root: str = "reports",
              n_jobs: int = 1, progress: bool = True) -> list[Path]:
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    specs = _specs(figure, scale, results_dir)
    results = run_specs(specs, n_jobs=n_jobs, progress=progress)
    keys = {r.key for r in results}
    label = RunMeta.read(results[0].meta_path).problem_label     # the records name their problem
    rows, metas = load_runs(results_dir, label)
    metas = [m for m in metas if m["run_key"] in keys]
    rows = rows[rows.run_key.isin(keys)]
    out = Path(out_root) / figure
    truth_path = Path(results_dir) / label / "ground_truth.mrc"
    from problems.data.io import read_mrc
    truth = read_mrc(truth_path)[0] if truth_path.exists() else None
    radius = next((m["band_radius"] for m in metas if m.get("band_radius")), None)
    if truth is not None and radius:
        truth = display_filter(truth, radius)
    ref = next((m["reference_test_nll"] for m in metas if m.get("reference_test_nll") is not None), None)
    written = []
    if figure == "fig3":
        written += figures.save(figures.convergence(rows, f"Fig. 3 ({label}): test NLL vs gradient evaluations", ref),
                                out / "fig3")
        table = rows.sort_values("evals").groupby("optimizer").tail(1)[["optimizer", "evals", "test_nll"]]
        table.to_csv(out / "fig3-final.csv", index=False)
        written.append(out / "fig3-final.csv")
    elif figure == "fig4":
        panels, columns = snapshot_panels(metas)
        written += figures.save(figures.snapshot_grid(panels, truth, columns,
                                                      f"Fig. 4 ({label}): densities after 5K, 50K and all evaluations"),
                                out / "fig4")
        finals = {n: panels[n]["final"] for n in figures.order(panels) if "final" in panels[n]}
        if truth is not None:
            finals["ground truth"] = truth
        written += figures.save(figures.isosurface_grid(finals, f"Fig. 4 ({label}): final densities, isosurface view"),
                                out / "fig4-isosurface")
        fsc = fsc_table(metas)
        fsc.to_csv(out / "fig4-fsc.csv", index=False)
        written.append(out / "fig4-fsc.csv")
    else:
        panels, _ = snapshot_panels(metas)
        finals = {name: {"final": vols["final"]} for name, vols in panels.items() if "final" in vols}
        written += figures.save(figures.snapshot_grid(finals, truth, ["final"],
                                                      f"Fig. 6 ({label}): projection matching and EM after 5 "
                                                      f"iterations vs SGD after 1 epoch"), out / "fig6")
        summary = fsc_table(metas).merge(
            rows.sort_values("evals").groupby("optimizer").tail(1)[["optimizer", "test_nll"]], on="optimizer")
        summary.to_csv(out / "fig6-summary.csv", index=False)
        written.append(out / "fig6-summary.csv")
    return written
