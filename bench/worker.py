"""Run one spec in this (child) process, sandboxed: ``python -m bench.worker SPEC.json OUT_DIR``.

Used for submitted optimizers: the problem is loaded first, then the audit
hook of :mod:`bench.guard` is installed (it cannot be removed), protecting
the data cache and the results directory while optimizer steps run; the
record is written to ``OUT_DIR`` and the parent moves it into place.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _warm_up(problem) -> None:
    """Compile and load every kernel before the sandbox starts (JIT compilation introspects frames)."""
    oracle = problem.oracle()
    x = problem.initial_density(0)
    idx = [0, 1]
    oracle.value(x, idx)
    oracle.value_and_grad(x, idx)
    oracle.hvp(x, x, idx)
    oracle.m_step(oracle.expectation(x, idx) + oracle.expectation(x, idx, hard=True), x, max_iter=1)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    out_dir = Path(argv[1])
    from problems.data.cache import cache_dir

    from .guard import install_sandbox
    from .runner import run
    from .sweep import _problem
    problem = _problem(spec["problem"], spec["scale"], spec.get("data_seed", 0),
                       tuple(sorted(spec.get("extra", {}).items())))
    if spec.get("validation"):
        problem = problem.validation_split(spec["validation"], seed=spec.get("data_seed", 0))
    _warm_up(problem)
    switch = install_sandbox([cache_dir(), Path(spec["results_dir"])])
    res = run(problem, spec["optimizer"], spec.get("hyper", {}), budget=spec["budget"], seed=spec.get("seed", 0),
              results_dir=out_dir, progress=False, compare_truth=spec.get("compare_truth", True), sandbox=switch)
    print(json.dumps({"status": res.status, "key": res.key, "final_test_nll": res.final_test_nll,
                      "meta_path": str(res.meta_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
