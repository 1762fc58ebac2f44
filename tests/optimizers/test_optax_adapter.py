"""The optax adapter: any optax.GradientTransformation through the oracle (issue 25)."""
from dataclasses import dataclass

import numpy as np
import pytest

from optimizers import get_optimizer
from optimizers.optax_adapter import OptaxOptimizer
from optimizers.testing import QuadraticOracle

optax = pytest.importorskip("optax", reason="optax not installed (pip install -e .[optax])")


def _steps(opt, n=3):
    oracle = QuadraticOracle(budget=None)
    x, rng = np.zeros(oracle.shape, dtype=np.float32), np.random.default_rng(0)
    state = opt.init(x, oracle.info(), rng)
    xs, grads = [x], []
    for _ in range(n):
        probe = QuadraticOracle()                 # same data, same batch order: the gradient the step sees
        probe._pos, probe._order = oracle._pos, oracle._order
        grads.append(probe.value_and_grad(x, probe.next_batch(opt.batch_size))[1])
        x, state = opt.step(x, state, oracle, rng)
        xs.append(x)
    return xs, grads, oracle


def test_optax_sgd_is_plain_sgd():
    xs, grads, oracle = _steps(get_optimizer("optax", optimizer="sgd", lr=0.1, batch_size=8))
    for x0, x1, g in zip(xs, xs[1:], grads):
        np.testing.assert_allclose(x1, x0 - 0.1 * g, rtol=1e-5, atol=1e-6)
    assert oracle.evals == 3 * 8 and xs[-1].dtype == np.float32


def test_optax_adam_first_step_is_lr_times_sign():
    xs, grads, _ = _steps(get_optimizer("optax", optimizer="adam", lr=0.01, batch_size=8), n=1)
    np.testing.assert_allclose(xs[1] - xs[0], -0.01 * np.sign(grads[0]), rtol=1e-3, atol=1e-6)


def test_any_transformation_by_subclassing():
    @dataclass(frozen=True)
    class Clipped(OptaxOptimizer):
        name = "clipped"

        def transformation(self):
            return optax.chain(optax.clip_by_global_norm(1e-3), optax.sgd(1.0))
    xs, grads, _ = _steps(Clipped(batch_size=8), n=1)
    assert np.linalg.norm(xs[1] - xs[0]) == pytest.approx(1e-3, rel=1e-4)     # clipped to the global norm


def test_unknown_optax_name_is_an_error():
    with pytest.raises(ValueError, match="optax has no optimizer 'nope'"):
        get_optimizer("optax", optimizer="nope").init(np.zeros((2, 2, 2)), QuadraticOracle().info(), None)


def test_optax_on_the_tiny_problem(tiny, tmp_path):
    from bench.run.runner import run
    res = run(tiny, "optax", {"optimizer": "adam", "lr": 0.01}, budget="1epoch", results_dir=tmp_path,
              progress=False, compare_truth=False)
    assert res.status == "finished" and res.final_test_nll < tiny.test_nll(tiny.initial_density(0))
