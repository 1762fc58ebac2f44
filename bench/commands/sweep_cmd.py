"""Run a sweep of runs from a TOML config (joblib locally, Dask with --scheduler); resumable."""
from __future__ import annotations

from ._device import add_device_arg, apply_device


def add_args(p) -> None:
    add_device_arg(p)
    p.add_argument("config", help="sweep TOML file (see bench/run/sweep.py)")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--jobs", type=int, default=2, help="local worker processes (default 2)")


def main(args) -> int:
    apply_device(args)
    from bench.run.sweep import load_config, run_specs
    results = run_specs(load_config(args.config), n_jobs=args.jobs, scheduler=args.scheduler)
    done = sum(r.skipped for r in results)
    bad = [r for r in results if r.status not in ("finished", "diverged")]
    print(f"{len(results)} runs: {len(results) - done} run now, {done} reused; "
          f"{sum(r.status == 'diverged' for r in results)} diverged, {len(bad)} failed")
    for r in bad:
        print(f"  {r.spec.optimizer} {r.spec.hyper} seed {r.spec.seed}: {r.status} ({r.meta_path})")
    return 0 if not bad else 1
