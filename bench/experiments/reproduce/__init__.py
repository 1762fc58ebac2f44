"""One command per paper figure: tune, run (or reuse) exactly the runs it needs, then draw it.

``reproduce("fig3" | "fig4" | "fig6", scale, problems=...)`` follows the
paper's protocol (:mod:`bench.experiments.reproduce.paper_protocol`): per-method base learning
rates tuned on a subset of the training images, the paper's schedules and
batch sizes, 10 epochs, the problem's 100 held-out images, one random
initial density for all.  Fig. 3 and Fig. 4 share their runs (the records
are keyed by their inputs, so the second figure reuses the first's runs);
Fig. 6 runs projection matching and EM for 5 iterations, the tuned SGD for
one epoch and RELION 3.1 for 5 iterations on a documented random subset of
the training images (:mod:`bench.experiments.reproduce.relion_entry`).

Each reproduction writes, under ``OUT/<figure>/``, its figures (PNG + PDF),
CSVs (final values, tuning trials, FSC) and ``<figure>-<scale>.md``: the
protocol, the tuning table with its cost, the final table and the wall time
of every phase of this invocation (data, tuning, runs, RELION, drawing).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from optimizers import PAPER_SEVEN

from bench.report.data import load_runs
from bench.report.markup import plain, without_machine_paths
from bench.run.spec import cached_problem
from bench.run.sweep import run_specs
from . import draw
from . import paper_protocol as protocol

FIGURES = ("fig3", "fig4", "fig6")
DEFAULT_PROBLEMS = {"fig3": ("synthetic", "realistic"), "fig4": ("synthetic", "realistic"), "fig6": ("synthetic",)}
FIG6_RUNS = (("projection-matching", "5epochs"), ("em", "5epochs"), ("sgd", "1epoch"))


def reproduce(figure: str, scale: str = "small", results_dir: str = "results", out_root: str = "reports",
              n_jobs: int = 1, progress: bool = True, problems: tuple[str, ...] | None = None,
              relion: bool = True, relion_particles: int | None = None) -> list[Path]:
    """Reproduce one figure on each of ``problems`` at ``scale``; returns the files written."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    out = Path(out_root) / figure
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in problems or DEFAULT_PROBLEMS[figure]:
        files, section = _one_problem(figure, name, scale, results_dir, out, n_jobs, progress, relion,
                                      relion_particles)
        # each panel keeps its own section file: reproducing one panel leaves the others' sections in the report
        part = out / f"{figure}-{name}-{scale}.section.md"
        part.write_text(without_machine_paths(plain(section), results_dir, out_root) + "\n")
        written += files + [part]
    return written + [assemble_report(out, figure, scale)]


def assemble_report(out: Path, figure: str, scale: str) -> Path:
    """``OUT/<figure>-<scale>.md``: the protocol, then every panel's section present (synthetic first)."""
    sections = sorted(Path(out).glob(f"{figure}-*-{scale}.section.md"),
                      key=lambda p: (p.name != f"{figure}-synthetic-{scale}.section.md", p.name))
    report = Path(out) / f"{figure}-{scale}.md"
    report.write_text(f"# {figure} at scale `{scale}`\n\n{plain(protocol.__doc__.strip())}\n\n"
                      + "\n\n".join(p.read_text().strip() for p in sections) + "\n")
    return report


def _one_problem(figure, name, scale, results_dir, out, n_jobs, progress, relion, relion_particles):
    clock = {}
    t = time.perf_counter()
    problem = cached_problem(name, scale, 0)          # simulates the data set on first use
    clock["data (load or simulate)"] = time.perf_counter() - t
    label = f"{problem.name}-{scale}"
    methods = PAPER_SEVEN if figure != "fig6" else ("sgd",)
    t = time.perf_counter()
    tuning = {m: protocol.tune(name, scale, m, problem.n_train, results_dir, n_jobs, progress) for m in methods}
    clock["tuning"] = time.perf_counter() - t
    if figure == "fig6":
        specs = [protocol.scored_spec(name, scale, m, tuning.get(m, {}).get("hyper", {}), b, results_dir)
                 for m, b in FIG6_RUNS]
    else:
        specs = [protocol.scored_spec(name, scale, m, tuning[m]["hyper"], f"{protocol.EPOCHS}epochs", results_dir)
                 for m in methods]
    t = time.perf_counter()
    results = run_specs(specs, n_jobs=n_jobs, progress=progress)
    clock["runs"] = time.perf_counter() - t
    keys = {r.key for r in results}
    rows, metas = load_runs(results_dir, label)
    metas = [m for m in metas if m["run_key"] in keys]
    rows = rows[rows.run_key.isin(keys)]
    relion_out, relion_note = None, ""
    if figure == "fig6" and relion:
        from ..relion import available
        from .relion_entry import relion_entry
        if available():
            t = time.perf_counter()
            relion_out = relion_entry(problem, name, scale, results_dir, relion_particles)
            clock["RELION"] = time.perf_counter() - t
        else:
            relion_note = ("RELION not installed (relion_refine not on PATH): its entry is missing. Install RELION "
                           "3.1 (Debian/Ubuntu: apt-get install relion; `cryoopt doctor` checks it) or pass "
                           "--no-relion.")
            print(relion_note)
    t = time.perf_counter()
    note = f", {problem.n_train:,} training images"
    if figure == "fig3":
        files = draw.fig3(rows, metas, label, out, note)
    elif figure == "fig4":
        files = draw.fig4(metas, label, results_dir, out, note)
    else:
        files = draw.fig6(rows, metas, label, results_dir, out, relion_out, note)
    clock["drawing"] = time.perf_counter() - t
    tune_table = pd.DataFrame([{**{k: v for k, v in tr.items() if k != "trials"},
                                "trials (value: validation NLL)": "; ".join(f"{v:.4g}: {s:.4f}" for v, s in tr["trials"])}
                               for tr in tuning.values()])
    tune_csv = out / f"{figure}-{label}-tuning.csv"
    tune_table.to_csv(tune_csv, index=False)
    timing = {"figure": figure, "problem": label, "wall_seconds": clock, "total_wall_seconds": sum(clock.values()),
              "records_reused": sum(bool(r.skipped) for r in results), "records": len(results),
              "optimizer_seconds_in_records": sum(m["optimizer_seconds"] for m in metas)}
    timing_path = out / f"{figure}-{label}-timing.json"
    timing_path.write_text(json.dumps(timing, indent=1))
    return files + [tune_csv, timing_path], _section(label, problem, tuning, tune_table, clock, timing, relion_out,
                                                     relion_note, draw.final_table(rows, metas))


def _section(label, problem, tuning, tune_table, clock, timing, relion_out, relion_note, finals) -> str:
    cost = sum(t["cost_evals"] for t in tuning.values())
    lines = [f"## {label}: {problem.n_train:,} training images, box {problem.box_size} px, "
             f"band r_max = {problem.band.r_max:.2f}",
             "", "Wall time of this reproduction (seconds; runs found in the results folder are reused, not rerun: "
             f"{timing['records_reused']} of {timing['records']}):", "",
             pd.DataFrame([clock]).round(1).to_markdown(index=False),
             "", f"Optimizer time recorded in the runs themselves: {timing['optimizer_seconds_in_records']:.0f} s.",
             "", f"Tuning cost: {cost:,.0f} per-image gradient evaluations ({cost / problem.n_train:.2f} epochs) "
             f"over all methods, {protocol.tuning_budget(problem.n_train):,} per trial (HF: at least 5 iterations).", "",
             tune_table.to_markdown(index=False), "", finals.to_markdown(index=False)]
    if relion_out is not None:
        r = relion_out
        lines += ["", f"RELION 3.1 (`relion_refine`, 5 iterations of EM with one class): a random subset of "
                      f"{r['n_particles']:,} of the {r['n_train']:,} training images (seed 0), {r['seconds']:.0f} s"
                      f"{' (reused)' if r.get('reused') else ''}; map scaled by {r['scale']:.3g} (fitted on training "
                      f"images); test NLL {r['test_nll']:.3f} (unscaled {r['test_nll_unscaled']:.3f}).",
                  "", f"Command: `{r['command']}`", "", f"Full-set command (every training image; hours on 2 cores): "
                  f"`{r['full_set_command']}`"]
    if relion_note:
        lines += ["", relion_note]
    return "\n".join(lines)
