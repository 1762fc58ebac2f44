"""A reference optimum per problem and scale, and every run's suboptimality against it.

The reference is the lowest value of the full training objective

    f(x) = (1/K) sum_i NLL_i(x) + rho(x) / K

that the harness has found, with how it was found:

1. from the initial density (seed 0): ``sgd_epochs`` epochs of minibatch SGD
   with the paper's decaying steps ``eta_0 (1 + lambda t)^-0.75``, then
2. full-batch L-BFGS (``scipy.optimize.minimize``, L-BFGS-B without bounds)
   on ``f``; and, when the problem has a ground truth, the same L-BFGS started
   from it (the optimum of the truth's basin; the objective is not convex).

The lower end point wins.  "Certified" means: a point whose full objective,
test NLL, gradient norm and L-BFGS termination message are recorded with the
problem's content hash and the SHA-256 of the density, so anyone can
re-evaluate it; it is not a proof of global optimality.  If a run ever ends
lower, :func:`score_against_reference` replaces the reference by the run's
density and records that (``history`` keeps the previous ones).

Files: ``<results>/references/<problem>-<scale>.json`` (small, committed);
the densities and the resumable progress of a computation under
``$CRYOOPT_CACHE/references/``.  The computation saves after SGD and after
every ``chunk`` L-BFGS iterations, so an interrupted ``cryoopt reference``
continues where it stopped (L-BFGS restarts its curvature memory at a chunk
boundary, which costs a few iterations, not correctness).

The full objective is evaluated in float32 batches summed in float64 through
a fresh, uncharged oracle: harness-only, never an optimizer's budget.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from optimizers import OptimizerInfo, get_optimizer
from problems import BudgetExhausted, Problem, problem_label
from problems.data.cache import cache_dir
from problems.data.io import atomic_write_text

from .curvature import estimate_curvature

# a run "beats" the reference only by more than float32 round-off of f (relative)
BEAT_TOLERANCE = 1e-6


def full_objective(problem: Problem, x: np.ndarray, grad: bool = False, batch: int = 500):
    """``f(x)`` over every training image (and ``grad f`` if asked), uncharged.

    ``f = sum_b (n_b / K) f_B`` since every batch value ``f_B`` carries the
    same ``rho(x) / K``.
    """
    oracle = problem.oracle()
    x = np.asarray(x, dtype=np.float32)
    idx = np.arange(problem.n_train)
    total, g = 0.0, np.zeros(problem.shape) if grad else None
    for start in range(0, problem.n_train, batch):
        sel = idx[start:start + batch]
        weight = sel.size / problem.n_train
        if grad:
            f_b, g_b = oracle.value_and_grad(x, sel)
            g += weight * g_b
        else:
            f_b = oracle.value(x, sel)
        total += weight * float(f_b)
    return (total, g) if grad else total


def density_sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def _label(problem: Problem) -> str:
    return problem_label(problem)


def reference_path(results_dir: str | Path, problem: Problem) -> Path:
    return Path(results_dir) / "references" / f"{_label(problem)}.json"


def _work_dir(problem: Problem) -> Path:
    path = cache_dir() / "references" / f"{_label(problem)}-{problem.metadata['content_hash'][:12]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_reference(results_dir: str | Path, problem: Problem) -> dict | None:
    """The stored reference of this exact problem (content hash), or ``None`` (missing or stale)."""
    path = reference_path(results_dir, problem)
    if not path.exists():
        return None
    ref = json.loads(path.read_text())
    return ref if ref.get("problem_hash") == problem.metadata["content_hash"] else None


def _scores(problem: Problem, x: np.ndarray) -> dict:
    out = {"train_objective": full_objective(problem, x), "test_nll": problem.test_nll(x),
           "density_sha256": density_sha256(x)}
    if getattr(problem, "n_score", 0):
        out["score_nll"] = problem.score_nll(x)
    return out


def _sgd_stage(problem: Problem, work: Path, epochs: float, progress: bool) -> np.ndarray:
    path = work / f"sgd-{epochs:g}epochs.npy"
    if path.exists():
        return np.load(path)
    opt = get_optimizer("sgd")
    oracle = problem.oracle(budget=epochs * problem.n_train)
    rng = np.random.default_rng([0, 0xC0FFEE])
    x = problem.initial_density(0)
    # the built-in step sizes are relative to the harness's curvature scale: measure it as the runner does
    info = OptimizerInfo(oracle.n_train, oracle.shape, oracle.budget, estimate_curvature(problem, x))
    state = opt.init(x.copy(), info, rng)
    t0 = time.perf_counter()
    while True:
        try:
            x, state = opt.step(x, state, oracle, rng)
        except BudgetExhausted:
            break
        if not np.isfinite(x).all():
            raise RuntimeError(f"reference: SGD diverged on {_label(problem)} after {oracle.evals:g} evaluations")
    if progress:
        print(f"  SGD {epochs:g} epochs from the initial density: {time.perf_counter() - t0:.0f} s")
    np.save(path, np.asarray(x, dtype=np.float32))
    return np.asarray(x, dtype=np.float32)


def _lbfgs_stage(problem: Problem, work: Path, name: str, x0: np.ndarray, max_iter: int, chunk: int,
                 progress: bool) -> tuple[np.ndarray, dict]:
    """Full-batch L-BFGS in resumable chunks; returns the end point and its log."""
    state_path, x_path = work / f"lbfgs-{name}.json", work / f"lbfgs-{name}.npy"
    log = json.loads(state_path.read_text()) if state_path.exists() and x_path.exists() else \
        {"start": name, "iterations": 0, "evaluations": 0, "converged": False, "message": "", "trace": []}
    x = np.load(x_path) if x_path.exists() else np.asarray(x0, dtype=np.float32)

    def fun(flat):
        f, g = full_objective(problem, flat.reshape(problem.shape), grad=True)
        return f, g.ravel().astype(np.float64)

    while log["iterations"] < max_iter and not log["converged"]:
        t0 = time.perf_counter()
        res = minimize(fun, x.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                       options={"maxiter": min(chunk, max_iter - log["iterations"]), "maxcor": 20,
                                "ftol": 1e-12, "gtol": 1e-9})
        x = res.x.reshape(problem.shape).astype(np.float32)
        log["iterations"] += int(res.nit)
        log["evaluations"] += int(res.nfev)
        log["message"] = str(res.message)
        # Stop at convergence, or when a chunk no longer moves (line search at float32 round-off).
        log["converged"] = bool(res.success and res.nit < chunk) or res.nit == 0
        log["trace"].append({"iterations": log["iterations"], "f": float(res.fun),
                             "grad_norm": float(np.linalg.norm(res.jac))})
        np.save(x_path, x)
        atomic_write_text(state_path, json.dumps(log, indent=1))
        if progress:
            print(f"  L-BFGS from {name}: {log['iterations']} iterations, f = {res.fun:.6f}, "
                  f"|grad| = {np.linalg.norm(res.jac):.2e} ({time.perf_counter() - t0:.0f} s)")
        if res.nit == 0:
            break
    return x, log


def compute_reference(problem: Problem, results_dir: str | Path = "results", sgd_epochs: float = 20,
                      lbfgs_iters: int = 200, chunk: int = 10, starts: tuple[str, ...] = ("init", "truth"),
                      progress: bool = True) -> dict:
    """Compute (or resume) the reference of ``problem`` and write its JSON; returns the JSON.

    ``starts``: ``"init"`` (SGD then L-BFGS from the seed-0 initial density)
    and/or ``"truth"`` (L-BFGS from the ground truth, when there is one).
    A stored reference that is already lower than every new end point is kept.
    """
    if not starts:
        raise ValueError("reference: give at least one start ('init', 'truth')")
    work = _work_dir(problem)
    candidates = []
    for start in starts:
        if start == "init":
            x0 = _sgd_stage(problem, work, sgd_epochs, progress)
            how = f"SGD {sgd_epochs:g} epochs (defaults: lr 2 / L, decay 1e-2, batch 100) from the seed-0 initial density"
        elif start == "truth":
            if problem.ground_truth is None:
                continue
            x0, how = problem.ground_truth, "the ground truth"
        else:
            raise ValueError(f"reference: unknown start {start!r}; choose from 'init', 'truth'")
        x, log = _lbfgs_stage(problem, work, start, x0, lbfgs_iters, chunk, progress)
        grad_norm = float(np.linalg.norm(full_objective(problem, x, grad=True)[1]))
        candidates.append((x, {**_scores(problem, x), "how": f"{how}, then full-batch L-BFGS "
                               f"({log['iterations']} iterations, {log['message']})",
                               "start": start, "lbfgs": log, "grad_norm": grad_norm}))
    if not candidates:
        raise ValueError(f"reference: no usable start for {_label(problem)}")
    x, best = min(candidates, key=lambda c: c[1]["train_objective"])
    entry = {"problem": problem.name, "scale": problem.metadata.get("scale"),
             "problem_version": problem.metadata["version"], "problem_hash": problem.metadata["content_hash"],
             **best, "candidates": [{k: v for k, v in c.items() if k != "lbfgs"} for _, c in candidates],
             "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "history": []}
    old = load_reference(results_dir, problem)
    if old is not None and old["train_objective"] <= entry["train_objective"]:
        return old
    if old is not None:
        entry["history"] = old.get("history", []) + [{k: old[k] for k in ("train_objective", "test_nll", "how")}]
    _store(problem, results_dir, x, entry)
    return entry


def _store(problem: Problem, results_dir, x: np.ndarray, entry: dict) -> None:
    np.save(_work_dir(problem) / f"reference-{entry['density_sha256'][:16]}.npy", np.asarray(x, np.float32))
    entry["density_file"] = f"$CRYOOPT_CACHE/references/{_work_dir(problem).name}/" \
                            f"reference-{entry['density_sha256'][:16]}.npy"
    path = reference_path(results_dir, problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(entry, indent=1, sort_keys=True) + "\n")


def score_against_reference(problem: Problem, results_dir, x: np.ndarray, train_objective: float,
                            test_nll: float | None, source: str) -> dict:
    """Suboptimality ``f(x) - f_ref`` and test-NLL gap of a run's final density.

    If ``x`` is lower than the reference by more than :data:`BEAT_TOLERANCE`
    (relative), ``x`` becomes the reference (the old one goes to
    ``history``) and the answer says ``beat_reference: True``.
    """
    ref = load_reference(results_dir, problem)
    if ref is None:
        return {"available": False, "train_objective": train_objective}
    out = {"available": True, "train_objective": train_objective,
           "reference_train_objective": ref["train_objective"], "reference_test_nll": ref["test_nll"],
           "suboptimality": train_objective - ref["train_objective"],
           "test_nll_gap": None if test_nll is None else test_nll - ref["test_nll"],
           "reference_density_sha256": ref["density_sha256"], "beat_reference": False}
    if train_objective < ref["train_objective"] - BEAT_TOLERANCE * abs(ref["train_objective"]):
        entry = {**ref, **_scores(problem, x), "how": f"run {source} beat the previous reference",
                 "start": "run", "grad_norm": None,
                 "history": ref.get("history", []) + [{k: ref[k] for k in ("train_objective", "test_nll", "how")}],
                 "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _store(problem, results_dir, x, entry)
        out["beat_reference"] = True
    return out


def run_scores(problem: Problem, results_dir, x: np.ndarray, final_test_nll: float | None,
               train_objectives: dict, source: str) -> dict:
    """The harness's end-of-run scores for a record (keys added to its JSON).

    ``train_objective``: full training objective per snapshot tag (the runner passes none and
    this adds ``"final"``: one pass over the training images per run);
    ``optimality``: :func:`score_against_reference` of the final density;
    ``test_nll_per_image`` (and, with a scoring split, ``score_nll`` /
    ``score_nll_per_image``): per-image held-out NLLs for paired comparisons.
    """
    out: dict = {"train_objective": dict(train_objectives)}
    if not np.isfinite(x).all():
        return out
    final_f = train_objectives.get("final")
    if final_f is None:
        final_f = out["train_objective"]["final"] = full_objective(problem, x)
    test_nll = final_test_nll if final_test_nll is not None and np.isfinite(final_test_nll) else None
    out["optimality"] = score_against_reference(problem, results_dir, x, final_f, test_nll, source)
    out["test_nll_per_image"] = problem.test_nll(x, per_image=True).tolist()
    if getattr(problem, "n_score", 0):
        per_image = problem.score_nll(x, per_image=True)
        out["score_nll"] = float(per_image.mean())
        out["score_nll_per_image"] = per_image.tolist()
    return out
