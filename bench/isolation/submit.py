"""Submitting an optimizer: describe it in the sandbox, tune, score on the secret instance, add an entry.

The protocol (:mod:`bench.run.tuning`) is the same for every optimizer: trials
on the validation split of the *published* instance (documented seed
:data:`PUBLIC_SEED`), then the chosen setting with several seeds on the
*scored* instance, generated from a seed that is not in the repository
(:func:`secret_seed`).  Submitted code runs only in the sandbox of
:mod:`bench.isolation` (never imported here); built-in optimizers (trusted)
run through the ordinary sweep executor on the same instances.  The entry is
keyed by a harness-assigned id; only its owner, the harness, writes it.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

from optimizers import BUILTIN, available
from problems import problem_label

from bench.score.leaderboard import entry_path, run_ranked, write_entry
from bench.run.sweep import _problem, run_specs
from bench.run.tuning import describe_class, pick_best, protocol_specs, sample_hyperparameters, seed_specs

SCALE_DEFAULTS = {  # (budget, tuning budget, trials, seeds)
    "tiny": ("3epochs", "1epoch", 4, 3),
    "small": ("5epochs", "1epoch", 6, 3),
    "paper": ("10epochs", "1epoch", 8, 3),
}
PUBLIC_SEED = 0
"""Seed of the published instances (development, tuning); seeds below 1000 are reserved as public."""
SECRET_SEED_FILE = Path("~/.config/cryoopt/secret_seed")


class SecretSeedMissing(RuntimeError):
    """No scoring seed is configured (see :func:`secret_seed`)."""


def secret_seed() -> int:
    """The seed of the scored instances: ``$CRYOOPT_SECRET_SEED``, else the file
    ``$CRYOOPT_SECRET_SEED_FILE`` (default ``~/.config/cryoopt/secret_seed``), an integer >= 1000.

    A maintainer draws it once (e.g. ``python -c "import secrets; print(secrets.randbelow(2**62) + 1000)"``),
    keeps it out of the repository and out of the results that are published.
    """
    text = os.environ.get("CRYOOPT_SECRET_SEED")
    source = "CRYOOPT_SECRET_SEED"
    if text is None:
        path = Path(os.environ.get("CRYOOPT_SECRET_SEED_FILE", SECRET_SEED_FILE)).expanduser()
        if not path.is_file():
            raise SecretSeedMissing("leaderboard scores need the secret instance seed: set CRYOOPT_SECRET_SEED or "
                                    f"write it to {path} (README, 'Leaderboard'); published seeds are for tuning only")
        text, source = path.read_text(), str(path)
    try:
        seed = int(text.strip())
    except ValueError:
        raise SecretSeedMissing(f"{source}: expected an integer, got {text.strip()[:40]!r}") from None
    if seed < 1000:
        raise SecretSeedMissing(f"{source}: seeds below 1000 are public; draw a large random one")
    return seed


def _as_dict(spec) -> dict:
    return dict(spec) if isinstance(spec, dict) else spec.to_dict()


def _with(spec, **changes):
    """A run spec (plain dict or :class:`bench.run.spec.RunSpec`) with some fields changed."""
    return {**spec, **changes} if isinstance(spec, dict) else replace(spec, **changes)


def _isolated(specs: list[dict], info: dict, results_dir: str, timeout: float) -> list[dict]:
    from .harness import run_isolated
    return [run_isolated(s, info, results_dir=results_dir, timeout=timeout) for s in specs]


def run_protocol(problem: str, scale: str, optimizer_spec: str, *, results_dir: str = "results",
                 budget: str | None = None, tuning_budget: str | None = None, trials: int | None = None,
                 seeds: int | None = None, n_validation: int = 50, isolated: bool = True,
                 timeout: float = 600.0, n_jobs: int = 2, submitted: bool = True,
                 scoring_seed: int | None = None) -> Path:
    """Tune, run seeds on the scored instance, and write the entry; returns the entry's path.

    ``isolated=False`` (trusted code only) runs in-process; a file submission is always isolated.
    ``scoring_seed`` defaults to :func:`secret_seed`.
    """
    d_budget, d_tuning, d_trials, d_seeds = SCALE_DEFAULTS[scale]
    budget, tuning_budget = budget or d_budget, tuning_budget or d_tuning
    trials, seeds = trials or d_trials, seeds or d_seeds
    scoring_seed = secret_seed() if scoring_seed is None else int(scoring_seed)
    results_dir = str(results_dir)
    started = time.perf_counter()
    sandboxed = ".py:" in optimizer_spec           # a file: untrusted, never imported here
    if sandboxed:
        from .harness import describe, require_sandbox
        from problems.data.cache import cache_dir
        require_sandbox()
        protected = [cache_dir(), Path(results_dir)]
        info = describe(optimizer_spec, protected=protected)
        if info["name"] in available():
            raise ValueError(f"optimizer name {info['name']!r} is reserved (installed optimizer); rename the class")
        entry_id = f"sub-{uuid.uuid4().hex[:12]}"
        base = {"problem": problem, "scale": scale, "optimizer": optimizer_spec, "record_name": entry_id}
        trial_specs = [{**base, "data_seed": PUBLIC_SEED, "hyper": h, "seed": 0, "budget": tuning_budget,
                        "validation": n_validation, "compare_truth": False}
                       for h in sample_hyperparameters(info, trials, seed=0)]
        execute = lambda specs: _isolated(specs, info, results_dir, timeout)  # noqa: E731
    else:
        info = describe_class(optimizer_spec)
        entry_id = info["name"]
        trial_specs = protocol_specs(problem, scale, optimizer_spec, n_trials=trials, tuning_budget=tuning_budget,
                                     n_validation=n_validation, results_dir=results_dir)
        execute = lambda specs: run_specs(specs, n_jobs=n_jobs, progress=False)  # noqa: E731
    trial_results = execute(trial_specs)
    usable = [r for r in trial_results if r.get("meta_path")]
    if not any(r["status"] == "finished" for r in trial_results):
        first = trial_results[0]
        detail = first.get("message") or (json.loads(Path(first["meta_path"]).read_text())["message"]
                                          if first.get("meta_path") else first["status"])
        raise ValueError(f"{optimizer_spec}: every tuning run failed ({first['status']}: {detail})")
    best, tuning_cost = pick_best(usable)
    final_specs = [_with(s, data_seed=scoring_seed)
                   for s in seed_specs(problem, scale, optimizer_spec, best, budget=budget, n_seeds=seeds,
                                       results_dir=results_dir)]
    if sandboxed:
        final_specs = [{**_as_dict(s), "record_name": entry_id} for s in final_specs]
    runs = execute(final_specs)
    prob = _problem(problem, scale, scoring_seed, ())
    label = problem_label(prob)
    entry = {"entry_id": entry_id, "optimizer": info["name"], "optimizer_spec": optimizer_spec,
             "submitted": bool(submitted or sandboxed), "problem": label,
             "problem_hash": prob.metadata["content_hash"], "budget": budget, "tuning_budget": tuning_budget,
             "trials": trials, "hyperparameters": best, "tuning_cost": tuning_cost,
             "reference_test_nll": None if prob.ground_truth is None else prob.test_nll(prob.ground_truth),
             "runs": [{"seed": r["spec"]["seed"], "status": r["status"],
                       "final_test_nll": r["final_test_nll"] if r["status"] in ("finished", "diverged") else None,
                       "record": None if not r.get("meta_path") else os.path.relpath(r["meta_path"], results_dir)}
                      for r in runs],
             "seconds": time.perf_counter() - started}
    entry["status"] = "ranked" if run_ranked(entry) else "unranked"
    path = entry_path(Path(results_dir), label, entry_id)
    write_entry(path, entry)
    return path


def ensure_builtin_entries(problem: str, scale: str, results_dir: str = "results", progress: bool = True,
                           n_jobs: int = 2, scoring_seed: int | None = None) -> list[Path]:
    """Run the protocol for every built-in optimizer lacking an entry on this problem's scored instance."""
    from tqdm.auto import tqdm
    scoring_seed = secret_seed() if scoring_seed is None else int(scoring_seed)
    prob = _problem(problem, scale, scoring_seed, ())
    label = problem_label(prob)

    def current(name: str) -> bool:
        path = entry_path(Path(results_dir), label, name)
        try:
            return json.loads(path.read_text()).get("problem_hash") == prob.metadata["content_hash"]
        except (OSError, ValueError, AttributeError):
            return False

    # Optimizers with optional dependencies (`requires`) are left out: the built-in board is the same everywhere.
    missing = [n for n, cls in BUILTIN.items() if not getattr(cls, "requires", ()) and not current(n)]
    made = []
    for name in tqdm(missing, desc=f"built-in entries for {label}", disable=not progress or not missing):
        made.append(run_protocol(problem, scale, name, results_dir=results_dir, isolated=False,
                                 n_jobs=n_jobs, submitted=False, scoring_seed=scoring_seed))
    return made

