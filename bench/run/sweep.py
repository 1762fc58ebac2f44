"""Many runs: a grid of (optimizer, hyperparameters, seed) on one problem, resumable.

Each run's record path is a hash of its inputs and a record is complete only
once its JSON exists (written last, atomically), so a sweep killed at any
moment -- even by SIGKILL -- and started again skips the finished runs and
redoes at most the runs that were in flight.  Runs execute on joblib worker
processes by default and on a Dask cluster when a scheduler address is given.
"""
from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

from tqdm.auto import tqdm

from optimizers import coerce_hyperparameters, get_optimizer_class

from .spec import RunSpec, RunSummary, cached_problem

_problem = cached_problem      # the old name (bench/isolation/submit.py)


def execute(spec: RunSpec | dict) -> RunSummary:
    """Run one spec (plain data, so it travels to any worker) and return its summary."""
    from .runner import run
    from bench.score.curvature import estimate_curvature
    spec = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)
    x0 = curvature = None
    if spec.validation:
        # a tuning run starts where the scored run will start (its initial density and curvature scale),
        # so the relative hyperparameters tuned on the validation split transfer unchanged
        scored = cached_problem(spec.problem, spec.scale, spec.data_seed, tuple(sorted(spec.extra.items())))
        x0 = scored.initial_density(spec.seed)
        curvature = estimate_curvature(scored, x0)
    res = run(spec.load_problem(), spec.optimizer, spec.hyper, budget=spec.budget, seed=spec.seed,
              results_dir=spec.results_dir, progress=False, compare_truth=spec.compare_truth, x0=x0,
              curvature=curvature)
    return res.with_spec(spec)


def load_config(path: str | Path) -> list[RunSpec]:
    """Expand a sweep TOML file into run specs.

    ::

        problem = "synthetic"      # optional, default synthetic
        scale = "tiny"
        budget = "2epochs"
        seeds = [0, 1, 2]
        results_dir = "results"    # optional
        [optimizers.sgd]
        lr = [0.5, 1.0]            # lists are swept (Cartesian product), scalars fixed
        [optimizers.adam]

    Hyperparameters are coerced to the optimizer's field types here, so a
    bad value (``lr = "abc"``, an unknown name) fails before any run starts.
    """
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read sweep config ({exc})") from exc
    for key in ("scale", "budget", "optimizers"):
        if key not in cfg:
            raise ValueError(f"{path}: missing key {key!r}")
    specs = []
    for name, grid in cfg["optimizers"].items():
        keys = list(grid)
        values = [v if isinstance(v, list) else [v] for v in grid.values()]
        for combo in itertools.product(*values) if keys else [()]:
            try:
                hyper = coerce_hyperparameters(get_optimizer_class(name), dict(zip(keys, combo)))
            except ValueError as exc:
                raise ValueError(f"{path}: [optimizers.{name}]: {exc}") from exc
            for seed in cfg.get("seeds", [0]):
                specs.append(RunSpec(problem=cfg.get("problem", "synthetic"), scale=cfg["scale"],
                                     data_seed=cfg.get("data_seed", 0), optimizer=name, hyper=hyper,
                                     budget=cfg["budget"], seed=seed,
                                     results_dir=str(cfg.get("results_dir", "results")),
                                     compare_truth=cfg.get("compare_truth", True)))
    return specs


def _execute_numbered(number: int, spec: RunSpec | dict) -> tuple[int, RunSummary]:
    return number, execute(spec)


def describe(specs: list[RunSpec]) -> str:
    """A progress bar's name for ``specs``: ``"tuning sgd, adam on synthetic-small-validation"``."""
    get = lambda s, k, d=None: s.get(k, d) if isinstance(s, dict) else getattr(s, k, d)  # noqa: E731
    opts = sorted({str(get(s, "optimizer")).rpartition("/")[2] for s in specs})
    where = sorted({f"{get(s, 'problem')}-{get(s, 'scale')}" + ("-validation" if get(s, "validation") else "")
                    for s in specs})
    tuning = "tuning " if all(get(s, "validation") for s in specs) else ""
    more = f" +{len(opts) - 3}" if len(opts) > 3 else ""
    return f"{tuning}{', '.join(opts[:3])}{more} on {', '.join(where)}"


def run_specs(specs: list[RunSpec], n_jobs: int = 2, scheduler: str | None = None,
              progress: bool = True) -> list[RunSummary]:
    """Execute specs on joblib processes (or a Dask cluster at ``scheduler``).

    Returns the summaries in the order of ``specs``, whatever order the workers
    finish in: tuning breaks ties by trial order and leaderboard entries list
    their runs in this order, so both must not depend on scheduling.
    """
    from joblib import Parallel, delayed, parallel_config

    def _run(backend: str):
        with parallel_config(backend=backend, n_jobs=n_jobs if backend != "dask" else -1):
            gen = Parallel(return_as="generator_unordered")(
                delayed(_execute_numbered)(i, s) for i, s in enumerate(specs))
            done = dict(tqdm(gen, total=len(specs), desc=describe(specs) if specs else "sweep", unit="run", disable=not progress))
            return [done[i] for i in range(len(specs))]

    if scheduler is None:
        return _run("loky" if n_jobs != 1 else "sequential")
    from dask.distributed import Client
    with Client(scheduler):
        return _run("dask")
