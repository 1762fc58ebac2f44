"""Defaults that work at every scale: every built-in optimizer, its defaults, finite and improving.

Step sizes are relative to the harness's curvature scale
(:mod:`bench.score.curvature`), so the same defaults must hold on problems whose
curvature differs by orders of magnitude (synthetic tiny L ~ 0.13, realistic
tiny ~ 1.9, synthetic small ~ 6, paper ~ 38).  Paper scale is checked by
``cryoopt reproduce`` (the records' statuses) and the slow test below.
"""
import numpy as np
import pytest

from bench.run.runner import run
from optimizers import BUILTIN, get_optimizer_class
from optimizers.base import missing_requirements

# EM and projection matching have no step size (a step is a full E/M pass; Fig. 6 runs them);
# torch is checked by its own tests; adapters of optional packages (optax) run where installed.
STEP_SIZE_METHODS = [n for n in BUILTIN if n not in ("em", "projection-matching", "torch")
                     and not missing_requirements(get_optimizer_class(n))]


def _check(problem, names, budget, tmp_path):
    start = problem.test_nll(problem.initial_density(0))
    bad = {}
    for name in names:
        # Hessian-free's one step costs 300 x (1 + 2 x 5 CG) evaluations: give it two steps at least
        res = run(problem, name, {}, budget=max(budget, 6600) if name == "hessian-free" else budget, results_dir=tmp_path, progress=False, compare_truth=False)
        if res.status != "finished" or res.final_test_nll is None or not np.isfinite(res.final_test_nll) \
                or res.final_test_nll >= start:
            bad[name] = (res.status, res.final_test_nll)
    assert not bad, f"{problem}: defaults failed (start {start:.3f}): {bad}"


@pytest.mark.parametrize("name", ["synthetic", "realistic"])
def test_defaults_finite_and_improving_tiny(name, tmp_path, _isolated_cache):
    from problems import load_problem
    _check(load_problem(name, scale="tiny", seed=0, progress=False), STEP_SIZE_METHODS, 2000, tmp_path)


@pytest.mark.slow
def test_defaults_finite_and_improving_small(tmp_path, _isolated_cache):
    from problems import load_problem
    p = load_problem("synthetic", scale="small", seed=0, progress=False)
    _check(p, ["sgd", "momentum", "tonga", "hessian-free", "olbfgs"], "1epoch", tmp_path)


@pytest.mark.slow
def test_defaults_finite_and_improving_paper(tmp_path, _isolated_cache):
    from problems import load_problem
    p = load_problem("synthetic", scale="paper", seed=0, progress=False)
    _check(p, ["sgd", "momentum", "nesterov", "tonga", "olbfgs", "hessian-free", "adagrad"], 10_000, tmp_path)
