"""The tuning protocol, applied to every optimizer alike.

1. ``n_trials`` hyperparameter settings: the optimizer's defaults, then
   scrambled-Sobol points (``scipy.stats.qmc``, seeded) mapped onto its
   search space (log or linear ranges);
2. each trial runs on the *validation problem* -- ``n_validation`` training
   images held out from training (never the test images) -- with the tuning
   budget; the trial with the lowest final validation NLL wins (diverged or
   failed trials score +inf);
3. the winner runs with ``n_seeds`` seeds at the full budget on the real problem.

The tuning cost -- the per-image gradient evaluations *allotted* to all
trials, not what a trial chose to spend (an optimizer that stops its trials
early must not look cheaper to tune; issue 22) -- is recorded beside the score.

Sampled settings are finite for any finite range: a log range is sampled as
``exp(log lo + u (log hi - log lo))`` and a linear one as ``lo (1 - u) + hi u``,
so ``[1e-300, 1e300]`` cannot overflow to ``inf`` (``lo * (hi / lo) ** u`` would).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import fields

from scipy.stats import qmc

from optimizers import get_optimizer_class

from .records import RunMeta
from .spec import RunSpec


def describe_class(optimizer_spec: str) -> dict:
    """Defaults and search space of an installed (trusted) optimizer, as plain data.

    Submitted optimizers are never imported by the harness: their description
    comes from :func:`bench.isolation.harness.describe` (same format).
    """
    cls = get_optimizer_class(optimizer_spec)
    defaults = {f.name: f.default for f in fields(cls)} if hasattr(cls, "__dataclass_fields__") else {}
    space = {k: {"low": float(r.low), "high": float(r.high), "scale": r.scale}
             for k, r in (getattr(cls, "search_space", {}) or {}).items()}
    return {"name": cls.name, "defaults": defaults, "search_space": space}


def sample_hyperparameters(optimizer: str | dict, n_trials: int, seed: int = 0) -> list[dict]:
    """Trial settings: defaults first, then Sobol points over the search space.

    ``optimizer`` is an installed optimizer's spec or a description (``defaults``, ``search_space``).
    """
    desc = describe_class(optimizer) if isinstance(optimizer, str) else optimizer
    space, defaults = desc["search_space"], desc["defaults"]
    trials = [{}]
    if not space or n_trials <= 1:
        return trials
    sampler = qmc.Sobol(d=len(space), scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # Sobol prefers powers of two; any n is fine here
        points = sampler.random(n_trials - 1)
    for u in points:
        trial = {}
        for (name, rng), ui in zip(space.items(), u):
            lo, hi = float(rng["low"]), float(rng["high"])
            val = (math.exp(math.log(lo) + ui * (math.log(hi) - math.log(lo))) if rng["scale"] == "log"
                   else lo * (1 - ui) + hi * ui)
            val = min(max(val, lo), hi)          # rounding must not leave the range
            is_int = isinstance(defaults.get(name), int) and not isinstance(defaults.get(name), bool)
            trial[name] = int(round(val)) if is_int else float(val)
        trials.append(trial)
    return trials


def protocol_specs(problem: str, scale: str, optimizer_spec: str, *, n_trials: int, tuning_budget: str,
                   n_validation: int, results_dir: str, seed: int = 0) -> list[RunSpec]:
    """Run specs of the tuning trials (step 2)."""
    return [RunSpec(problem=problem, scale=scale, optimizer=optimizer_spec, hyper=h, budget=tuning_budget,
                    seed=seed, results_dir=results_dir, validation=n_validation, compare_truth=False)
            for h in sample_hyperparameters(optimizer_spec, n_trials, seed)]


def pick_best(trial_results: list) -> tuple[dict, float]:
    """Best hyperparameters by final validation NLL, and the total tuning cost (budgets allotted).

    ``trial_results``: run summaries with a record (:class:`bench.run.spec.RunSummary`, or the
    isolated harness's summaries, read through the same mapping keys); the score and cost
    come from each record (:class:`bench.run.records.RunMeta`), not from the summary.
    """
    cost, best, best_score = 0.0, {}, math.inf
    for r in trial_results:
        meta = RunMeta.read(r["meta_path"])
        cost += meta.budget                     # allotted, whatever the trial spent
        score = meta.final_test_nll if meta.status == "finished" and meta.final_test_nll is not None else math.inf
        if score < best_score:
            best, best_score = r["spec"]["hyper"], score
    return best, cost


def seed_specs(problem: str, scale: str, optimizer_spec: str, hyper: dict, *, budget: str, n_seeds: int,
               results_dir: str) -> list[RunSpec]:
    """Run specs of the final runs (step 3)."""
    return [RunSpec(problem=problem, scale=scale, optimizer=optimizer_spec, hyper=hyper, budget=budget,
                    seed=s, results_dir=results_dir, compare_truth=True)
            for s in range(n_seeds)]
