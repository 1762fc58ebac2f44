"""examples/my_optimizer.py takes a relative step like the built-ins (issue 25)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from optimizers import get_optimizer
from optimizers.testing import QuadraticOracle

EXAMPLE = f"{Path(__file__).resolve().parents[2] / 'examples' / 'my_optimizer.py'}:MyOptimizer"


def test_example_step_is_relative_to_the_curvature_scale():
    opt = get_optimizer(EXAMPLE)
    steps = []
    for factor in (1.0, 100.0):           # the same problem scaled: L and the gradient scale alike
        oracle = QuadraticOracle()
        info = oracle.info()
        info = replace(info, curvature=info.curvature * factor)
        x0 = np.zeros(oracle.shape)
        state = opt.init(x0, info, np.random.default_rng(0))
        idx_before = oracle.evals
        _, state = opt.step(x0, state, oracle, np.random.default_rng(0))
        assert oracle.evals > idx_before
        steps.append(np.linalg.norm(state.average - x0))
    assert steps[1] == pytest.approx(steps[0] / 100)         # eta = lr / L: a 100x larger L, a 100x shorter step


def test_example_improves_the_tiny_problem_with_its_default(tiny, tmp_path):
    from bench.run.runner import run
    res = run(tiny, EXAMPLE, budget="2epochs", results_dir=tmp_path, progress=False, compare_truth=False)
    start = tiny.test_nll(tiny.initial_density(0))
    assert res.status == "finished" and res.final_test_nll < start - 0.1
