"""Submitting an optimizer: validate it, run the tuning protocol and seeds, add a leaderboard entry.

Submitted code runs in child processes (:mod:`bench.worker`) with a time
limit, behind the guarded oracle and the sandbox hook; built-in optimizers
(trusted) run through the ordinary sweep executor.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optimizers import BUILTIN, get_optimizer_class

from .leaderboard import entry_path, write_entry
from .sweep import _problem, run_specs
from .tuning import pick_best, protocol_specs, seed_specs

SCALE_DEFAULTS = {  # (budget, tuning budget, trials, seeds)
    "tiny": ("3epochs", "1epoch", 4, 3),
    "small": ("5epochs", "1epoch", 6, 3),
    "paper": ("10epochs", "1epoch", 8, 3),
}


def validate_optimizer_class(spec: str):
    """Load and check an optimizer class; raise ValueError with a clear message on any problem."""
    try:
        cls = get_optimizer_class(spec)
    except Exception as exc:
        raise ValueError(f"cannot load optimizer {spec!r}: {exc}") from exc
    if not isinstance(getattr(cls, "name", None), str):
        raise ValueError(f"{spec}: the class needs a string attribute `name`")
    expected = {"init": ["x0", "info", "rng"], "step": ["x", "state", "oracle", "rng"]}
    for method, params in expected.items():
        fn = getattr(cls, method, None)
        if not callable(fn):
            raise ValueError(f"{spec}: missing method {method}({', '.join(params)})")
        got = [p for p in inspect.signature(fn).parameters if p != "self"]
        if len(got) != len(params):
            raise ValueError(f"{spec}: {method} must take ({', '.join(params)}), it takes ({', '.join(got)})")
    try:
        cls()
    except Exception as exc:
        raise ValueError(f"{spec}: cannot construct with default hyperparameters ({exc})") from exc
    space = getattr(cls, "search_space", {})
    if not isinstance(space, dict):
        raise ValueError(f"{spec}: search_space must be a dict of optimizers.Range")
    return cls


def _isolated(specs: list[dict], timeout: float) -> list[dict]:
    """Run specs one by one in sandboxed child processes; move their records into place."""
    out = []
    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="cryoopt-worker-") as tmp:
            tmp = Path(tmp)
            (tmp / "spec.json").write_text(json.dumps(spec))
            try:
                proc = subprocess.run([sys.executable, "-m", "bench.worker", str(tmp / "spec.json"), str(tmp / "out")],
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                out.append({"spec": spec, "status": "timeout", "final_test_nll": None, "meta_path": None})
                continue
            if proc.returncode != 0:
                out.append({"spec": spec, "status": "error", "final_test_nll": None, "meta_path": None,
                            "message": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""})
                continue
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            produced = Path(summary["meta_path"])
            rel = produced.relative_to(tmp / "out")
            dest_dir = Path(spec["results_dir"]) / rel.parent
            dest_dir.mkdir(parents=True, exist_ok=True)
            for f in produced.parent.glob(f"{produced.stem}*"):
                shutil.move(str(f), dest_dir / f.name)
            summary["meta_path"] = str(dest_dir / produced.name)
            out.append({"spec": spec, **summary})
    return out


def run_protocol(problem: str, scale: str, optimizer_spec: str, *, results_dir: str = "results",
                 budget: str | None = None, tuning_budget: str | None = None, trials: int | None = None,
                 seeds: int | None = None, n_validation: int = 50, isolated: bool = True,
                 timeout: float = 600.0, n_jobs: int = 2, submitted: bool = True) -> Path:
    """Tune, run seeds, and write the leaderboard entry; returns the entry's path."""
    d_budget, d_tuning, d_trials, d_seeds = SCALE_DEFAULTS[scale]
    budget, tuning_budget = budget or d_budget, tuning_budget or d_tuning
    trials, seeds = trials or d_trials, seeds or d_seeds
    cls = validate_optimizer_class(optimizer_spec)
    execute = (lambda s: _isolated(s, timeout)) if isolated else (lambda s: run_specs(s, n_jobs=n_jobs, progress=False))
    started = time.perf_counter()
    trial_results = execute(protocol_specs(problem, scale, optimizer_spec, n_trials=trials,
                                           tuning_budget=tuning_budget, n_validation=n_validation,
                                           results_dir=results_dir))
    errors = [r for r in trial_results if r["status"] in ("error", "timeout")]
    if len(errors) == len(trial_results):
        detail = errors[0].get("message") or (json.loads(Path(errors[0]["meta_path"]).read_text())["message"]
                                              if errors[0].get("meta_path") else errors[0]["status"])
        raise ValueError(f"{optimizer_spec}: every tuning run failed ({errors[0]['status']}: {detail})")
    best, tuning_cost = pick_best([r for r in trial_results if r.get("meta_path")])
    runs = execute(seed_specs(problem, scale, optimizer_spec, best, budget=budget, n_seeds=seeds,
                              results_dir=results_dir))
    prob = _problem(problem, scale, 0, ())
    label = f"{prob.name}-{scale}"
    entry = {"optimizer": cls.name, "optimizer_spec": optimizer_spec, "submitted": submitted,
             "problem": label, "problem_hash": prob.metadata["content_hash"], "budget": budget,
             "tuning_budget": tuning_budget, "trials": trials, "hyperparameters": best,
             "tuning_cost": tuning_cost, "reference_test_nll": None if prob.ground_truth is None else prob.test_nll(prob.ground_truth),
             "runs": [{"seed": r["spec"]["seed"], "status": r["status"], "final_test_nll": r["final_test_nll"],
                       "record": None if not r.get("meta_path") else os.path.relpath(r["meta_path"], results_dir)}
                      for r in runs],
             "seconds": time.perf_counter() - started}
    path = entry_path(Path(results_dir), label, cls.name)
    write_entry(path, entry)
    return path


def ensure_builtin_entries(problem: str, scale: str, results_dir: str = "results", progress: bool = True,
                           n_jobs: int = 2) -> list[Path]:
    """Run the protocol for every built-in optimizer lacking an entry on this problem."""
    from tqdm.auto import tqdm
    label = f"{_problem(problem, scale, 0, ()).name}-{scale}"
    # Optimizers with optional dependencies (`requires`) are left out: the built-in board is the same everywhere.
    missing = [n for n, cls in BUILTIN.items() if not getattr(cls, "requires", ())
               and not entry_path(Path(results_dir), label, n).exists()]
    made = []
    for name in tqdm(missing, desc=f"built-in entries for {label}", disable=not progress or not missing):
        made.append(run_protocol(problem, scale, name, results_dir=results_dir, isolated=False,
                                 n_jobs=n_jobs, submitted=False))
    return made
