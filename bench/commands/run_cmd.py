"""Run one optimizer on one problem and write its record under results/.

Example: cryoopt run --problem synthetic --scale small --optimizer sgd --budget 2epochs --seed 0
"""
from __future__ import annotations

import json

from ._device import add_device_arg, apply_device


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def problem_kwargs(problem: str, items) -> dict:
    """``--problem-arg K=V`` items typed by the family loader's signature (unknown keys refused)."""
    import importlib

    from problems.catalog import family

    from ._coerce import typed_kwargs
    fam = family(problem)
    loader = getattr(importlib.import_module(fam.module, "problems.catalog"), fam.loader)
    return typed_kwargs(loader, items, "--problem-arg", reserved=("scale", "seed"))


def add_args(p) -> None:
    add_device_arg(p)
    p.add_argument("--problem", default="synthetic")
    p.add_argument("--scale", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--optimizer", default="sgd", help="name, entry point, or path/to/file.py:Class")
    p.add_argument("--budget", default="1epoch", help="e.g. 5epochs or 20000 (per-image gradients)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="hyperparameter")
    p.add_argument("--results", default="results", help="results directory")
    p.add_argument("--force", action="store_true", help="rerun even if the record exists")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    p.add_argument("--path", default=None, help="particle file (.star or .cs) for --problem star")
    p.add_argument("--problem-arg", action="append", default=[], metavar="K=V",
                   help="extra load_problem keyword, typed by the loader's signature, e.g. r_max=0.16, "
                        "box=64, normalise=false, pixel_size=1.06, datadir=/data/project")


def main(args) -> int:
    apply_device(args)
    from optimizers import coerce_hyperparameters, get_optimizer_class
    from problems import load_problem

    from bench.run.runner import run
    hyper = {}
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        hyper[key] = _value(val)
    # Typed (lr=1 is lr=1.0, hard=false a bool) and checked before the problem is even loaded.
    hyper = coerce_hyperparameters(get_optimizer_class(args.optimizer), hyper)
    extra = problem_kwargs(args.problem, getattr(args, "problem_arg", []))
    if getattr(args, "path", None):
        extra["path"] = args.path
    elif args.problem == "star" and "path" not in extra:
        raise ValueError("--problem star needs --path PARTICLES.star (or a cryoSPARC .cs file)")
    problem = load_problem(args.problem, scale=args.scale, seed=args.seed, **extra)
    result = run(problem, args.optimizer, hyper, budget=args.budget, seed=args.seed,
                 results_dir=args.results, force=args.force)
    start = problem.test_nll(problem.initial_density(args.seed))
    truth = None if problem.ground_truth is None else problem.test_nll(problem.ground_truth)
    if args.json:
        print(json.dumps({**result.to_dict(), "initial_test_nll": start, "ground_truth_test_nll": truth},
                         default=str))
        return 0 if result.status in ("finished", "diverged") else 1
    truth_text = "" if truth is None else f", ground truth {truth:.3f}"
    # A diverged run has no final test NLL (None): say so instead of failing to format it.
    final = "n/a" if result.final_test_nll is None else f"{result.final_test_nll:.3f}"
    print(f"{result.status}: test NLL {start:.3f} -> {final}{truth_text}\nrecord: {result.meta_path}")
    if result.message:
        print(f"{result.status}: {result.message}")
    if result.skipped:       # a reused record, failed or not, says so and how to redo it
        print(f"reused: this record was made by an earlier run with the same inputs (status {result.status}); "
              f"--force reruns it")
    return 0 if result.status in ("finished", "diverged") else 1
