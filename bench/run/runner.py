"""One run: (problem, optimizer, hyperparameters, seed, budget) -> a record.

Checkpoints at fixed geometric points of the budget (and at the start and
the end) record cost spent, optimizer wall time (evaluation excluded), the
last batch objective and the held-out test NLL; evaluation is never charged
to the optimizer.  Density snapshots (MRC) are kept at paper Fig. 4's points
(5K and 50K evaluations) and at the end.
"""
from __future__ import annotations

import re
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from optimizers import OptimizerInfo, get_optimizer, hyperparameters
from problems import BudgetExhausted, Problem, problem_label
from problems.data.io import write_mrc
from problems.protocol import NonFiniteInput, OracleInputError

from bench.score.curvature import estimate_curvature
from bench.score.metrics import compare_to_truth
from bench.score.reference import run_scores
from .guard import TamperingDetected, check_ledger, guarded
from .records import (RunMeta, budget_verdict, environment, instance_name, plugin_source_hash, record_paths, run_key,
                      truth_name, user_frames, write_record)
from .spec import RunSummary

SNAPSHOT_EVALS = (5_000, 50_000)
SECRET_SEEDS_FROM = 1 << 64
"""Data seeds from here up are secret (scored) instances: ``bench.isolation.submit`` derives them from a key."""


def publishes_densities(problem: Problem) -> bool:
    """Whether densities of this problem (snapshots, ground truth) may be written to the results folder:
    not for a secret instance, whose phantom a later submission could embed (issue 22)."""
    return int(problem.metadata.get("batch_order_seed", 0)) < SECRET_SEEDS_FROM


def parse_budget(text: str | float, n_train: int) -> float:
    """``"5epochs"`` / ``"2.5epoch"`` -> evaluations; a plain number is taken as evaluations."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(epochs?|evals?)?\s*", str(text))
        if not m:
            raise ValueError(f"budget {text!r}: expected e.g. '5epochs' or '20000'")
        value = float(m.group(1)) * (n_train if (m.group(2) or "").startswith("epoch") else 1)
    if not value > 0:
        raise ValueError(f"budget must be positive, got {text!r}")
    return value


def checkpoint_schedule(budget: float, n_points: int = 24, first: float = 100.0) -> np.ndarray:
    """Geometric checkpoints from ``first`` evaluations to the budget (fixed for every optimizer)."""
    return np.unique(np.concatenate([np.geomspace(min(first, budget), budget, n_points), [budget]]))


RunResult = RunSummary      # the name callers used before the summary type was shared


def run(problem: Problem, optimizer_spec: str, hyper: dict | None = None, budget: str | float = "1epoch",
        seed: int = 0, results_dir: str | Path = "results", progress: bool = True,
        x0: np.ndarray | None = None, force: bool = False, compare_truth: bool = True,
        curvature: float | None = None) -> RunSummary:
    """Run one optimizer on one problem and write its record (or reuse an existing one).

    The optimizer sees a guarded facade of the oracle (:mod:`bench.run.guard`);
    after every step the oracle's counter is checked against the harness's
    ledger.  ``compare_truth`` aligns the density to the ground truth (when
    there is one) at each snapshot and records the FSC resolutions.
    ``curvature``: the
    curvature scale handed to the optimizer (default: measured at ``x0`` by :mod:`bench.score.curvature`).
    """
    opt = get_optimizer(optimizer_spec, **(hyper or {}))
    full_hyper = hyperparameters(opt)
    budget_evals = parse_budget(budget, problem.n_train)
    label = problem_label(problem)
    source = plugin_source_hash(optimizer_spec)       # an edited plug-in file is a new run
    key = run_key(problem.metadata["content_hash"], opt.name, full_hyper, seed, budget_evals, source)
    parquet, meta_path = record_paths(Path(results_dir), label, opt.name, key)
    if meta_path.exists() and not force:
        done = RunMeta.read(meta_path)
        if done.status != "interrupted":
            return RunSummary(done.status, key, meta_path, done.final_test_nll, skipped=True, message=done.message)

    oracle = problem.oracle(budget=budget_evals)
    facade, ledger = guarded(oracle)
    rng = np.random.default_rng([seed, 0xC0FFEE])
    x = problem.initial_density(seed) if x0 is None else np.array(x0, dtype=np.float32)
    checkpoints = checkpoint_schedule(budget_evals)
    rows: list[dict] = []
    snapshots: dict[str, str] = {}
    opt_time = 0.0
    steps, max_step_cost = 0, 0.0

    harness = {"curvature": 0.0, "test NLL": 0.0, "snapshots": 0.0, "final scores": 0.0}   # uncharged seconds
    t_run = time.perf_counter()

    def record(x_now: np.ndarray) -> None:
        t = time.perf_counter()
        rows.append({"evals": oracle.evals, "wall_time": opt_time, "train_objective": oracle.last_value,
                     "test_nll": problem.test_nll(x_now) if np.isfinite(x_now).all() else np.nan})
        harness["test NLL"] += time.perf_counter() - t

    fsc_results: dict[str, dict] = {}

    # A tuning trial (validation split) is judged by its validation NLL alone: the full training objective
    # and the reference scores are for scored runs.  The full objective (a pass over every training image:
    # 4.5-20 s at paper scale) is evaluated once, for the final density's suboptimality
    # (bench.score.reference.run_scores); no figure or record uses it at the intermediate snapshots.
    scored = "validation_of" not in problem.metadata

    publish = publishes_densities(problem)

    def snapshot(x_now: np.ndarray, tag: str) -> None:
        t = time.perf_counter()
        path = meta_path.with_name(f"{key}.{tag}.mrc")
        pixel = problem.metadata.get("pixel_size_angstrom", 1.0)
        if publish:
            write_mrc(path, x_now, pixel)
            snapshots[tag] = path.name
        if compare_truth and problem.ground_truth is not None:
            cmp = compare_to_truth(x_now, problem.ground_truth, pixel, problem.band.r_max,
                                   device=getattr(problem, "device", None))
            fsc_results[tag] = {k: v for k, v in cmp.items() if k != "aligned"}
            fsc_results[tag]["evals"] = oracle.evals
        harness["snapshots"] += time.perf_counter() - t

    status, message = "finished", ""
    record(x)
    next_cp = 0
    pending_snaps = [s for s in SNAPSHOT_EVALS if s < budget_evals]
    bar = tqdm(total=budget_evals, desc=f"{opt.name} on {label}", unit="eval", disable=not progress,
               dynamic_ncols=True)
    # A diverging run overflows on its way to inf/NaN; the status says so, numpy need not warn.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            # the curvature scale is measured on an unbudgeted oracle: not charged, same for every optimizer
            t = time.perf_counter()
            info = OptimizerInfo(oracle.n_train, oracle.shape, budget_evals,
                                 curvature if curvature is not None else estimate_curvature(problem, x))
            harness["curvature"] = time.perf_counter() - t
            curvature = info.curvature          # recorded: the scale the relative step sizes used
            state = opt.init(x.copy(), info, rng)
            while True:
                before = oracle.evals
                t0 = time.perf_counter()
                try:
                    x_new, state = opt.step(x, state, facade, rng)
                except BudgetExhausted as exc:
                    check_ledger(oracle, ledger, before)
                    if oracle.evals == 0:   # not one step fitted: say why, never "finished"
                        status, message = "error", (
                            f"nothing ran: the optimizer's first request does not fit the budget "
                            f"({exc}); the problem has {oracle.n_train} training images: lower the "
                            f"batch size or raise the budget")
                    break
                check_ledger(oracle, ledger, before)
                opt_time += time.perf_counter() - t0
                steps, max_step_cost = steps + 1, max(max_step_cost, oracle.evals - before)
                bar.update(oracle.evals - before)
                x_new = np.asarray(x_new, dtype=np.float32)
                if x_new.shape != x.shape:    # kept out of x: the record below evaluates x
                    raise ValueError(f"step returned a density of shape {x_new.shape}, expected {x.shape}")
                x = x_new
                if not np.isfinite(x).all():
                    status, message = "diverged", f"non-finite density after {oracle.evals:g} evaluations"
                    break
                if oracle.evals == before:
                    raise RuntimeError(f"optimizer {opt.name} made a step that evaluated nothing")
                if next_cp < len(checkpoints) and oracle.evals >= checkpoints[next_cp]:
                    next_cp = int(np.searchsorted(checkpoints, oracle.evals, side="right"))
                    record(x)
                    bar.set_postfix(test_nll=f"{rows[-1]['test_nll']:.3f}")
                while pending_snaps and oracle.evals >= pending_snaps[0]:
                    snapshot(x, f"{int(pending_snaps.pop(0))}")
        except TamperingDetected as exc:
            status, message = "error", str(exc)
        except NonFiniteInput as exc:
            status, message = "diverged", str(exc)
        except OracleInputError as exc:
            status, message = "error", str(exc)
        except KeyboardInterrupt:
            status, message = "interrupted", "KeyboardInterrupt"
        except Exception as exc:  # an optimizer's bug must not crash the harness
            status, message = "error", "".join(traceback.format_exception_only(exc)).strip() + user_frames(
                exc, harness=(str(Path(__file__).parents[1]),))       # where in the optimizer's code
        finally:
            bar.close()
    if rows[-1]["evals"] != oracle.evals:
        record(x)
    if np.isfinite(x).all():
        snapshot(x, "final")
    status, message, budget_use = budget_verdict(status, message, steps, oracle.evals, budget_evals, max_step_cost)
    final = rows[-1]["test_nll"]
    t = time.perf_counter()
    scores = run_scores(problem, results_dir, x, final, {}, f"{opt.name}/{key}") if scored else {}
    harness["final scores"] = time.perf_counter() - t
    timing = {"wall_seconds": time.perf_counter() - t_run, "harness_seconds": harness}
    reference = None
    if problem.ground_truth is not None:
        reference = problem.test_nll(problem.ground_truth)
        truth_path = Path(results_dir) / label / truth_name(problem.metadata["content_hash"])
        if publish and not truth_path.exists():
            write_mrc(truth_path, problem.ground_truth, problem.metadata.get("pixel_size_angstrom", 1.0))
    meta = RunMeta(
        run_key=key, problem=problem.name, problem_label=label,
        problem_version=problem.metadata["version"], problem_hash=problem.metadata["content_hash"],
        optimizer=opt.name, optimizer_spec=optimizer_spec, hyperparameters=full_hyper,
        seed=seed, budget=budget_evals, evals=oracle.evals, status=status, message=message,
        final_test_nll=None if not np.isfinite(final) else float(final),
        reference_test_nll=reference, pixel_size_angstrom=problem.metadata.get("pixel_size_angstrom"),
        band_radius=problem.band.r_max, n_train=problem.n_train,
        optimizer_seconds=opt_time, snapshots=snapshots, fsc=fsc_results,
        calls=ledger.calls, extra={**environment(), **scores, **budget_use, **timing, "curvature": curvature,
                                   "instance": instance_name(problem.metadata),
                                   **({"source_hash": source} if source else {})},
    )
    for row in rows:
        row.update(run_key=key, optimizer=opt.name, seed=seed, problem=label)
    write_record(parquet, meta_path, rows, meta)
    if status == "interrupted":
        raise KeyboardInterrupt
    return RunSummary(status, key, meta_path, meta.final_test_nll, message=message)
