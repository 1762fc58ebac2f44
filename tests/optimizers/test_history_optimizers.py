"""oLBFGS and TONGA keep their results: the in-place, Gram-based versions against the plain algorithms.

The references below are the straightforward implementations they replaced
(two-loop recursion on full vectors; TONGA with an explicit float64 factor),
run on the same oracle, batches and seed: the iterates agree to 1e-5 relative.
"""
import numpy as np
import pytest

from optimizers import OptimizerInfo, get_optimizer
from optimizers._common import annealed, dot
from optimizers.olbfgs import two_loop_coefficients
from optimizers.testing import QuadraticOracle


def _reference_two_loop(g, pairs, epsilon):
    if not pairs:
        return epsilon * g
    q = g
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(s, q)
        alphas.append(a)
        q = q - a * y
    gamma = np.mean([dot(s, y) / dot(y, y) for s, y, _ in pairs])
    r = gamma * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * dot(y, r)
        r = r + (a - b) * s
    return r.astype(g.dtype)


def _reference_olbfgs(opt, x, oracle, steps, scale):
    pairs = ()
    for t in range(steps):
        idx = oracle.next_batch(opt.batch_size)
        _, g = oracle.value_and_grad(x, idx)
        x_new = x - annealed(opt.lr, opt.decay, t) * _reference_two_loop(g, pairs, opt.epsilon * scale)
        _, g_new = oracle.value_and_grad(x_new, idx)
        s = x_new - x
        y = g_new - g + opt.damping * s
        sy = dot(s, y)
        if sy > 0 and np.isfinite(sy):
            pairs = (pairs + ((s, y, 1.0 / sy),))[-opt.memory:]
        x = x_new
    return x


def _reference_tonga(opt, x, oracle, steps, scale):
    recent, basis, small_inv = (), None, None
    for t in range(steps):
        _, g = oracle.value_and_grad(x, oracle.next_batch(opt.batch_size))
        recent = (recent + (g,))[-opt.rank:]
        if len(recent) >= 2 and (basis is None or t % opt.refresh == 0):
            u_t = np.stack([v.ravel() for v in recent]).astype(np.float64) / np.sqrt(len(recent))
            gram = u_t @ u_t.T
            lam = opt.reg * np.trace(gram) / len(recent)
            basis, small_inv = u_t.astype(np.float32), np.linalg.inv(lam * np.eye(len(recent)) + gram)
        d = g
        if basis is not None:
            coeff = small_inv @ (basis @ g.ravel()).astype(np.float64)
            d = g - (coeff.astype(np.float32) @ basis).reshape(g.shape)
        x = x - annealed(opt.lr * scale, opt.decay, t) * d
    return x


def _new(opt, x, oracle, steps, info):
    rng = np.random.default_rng(0)
    state = opt.init(x.copy(), info, rng)
    for _ in range(steps):
        x, state = opt.step(x, state, oracle, rng)
    return x


def _rel(a, b):
    return float(np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel()))


@pytest.mark.parametrize("name, hyper, steps", [
    ("olbfgs", dict(lr=0.5, batch_size=8, memory=5), 60),       # the memory wraps around several times
    ("olbfgs", dict(lr=0.5, batch_size=8, damping=0.1), 20),
    ("tonga", dict(lr=0.1, reg=10.0, batch_size=8, rank=6, refresh=4), 60),
])
def test_same_iterates_as_plain_algorithm_on_quadratic(name, hyper, steps):
    opt = get_optimizer(name, **hyper)
    reference = {"olbfgs": _reference_olbfgs, "tonga": _reference_tonga}[name]
    o_ref, o_new = QuadraticOracle(condition=50.0), QuadraticOracle(condition=50.0)
    x0 = np.zeros(o_ref.shape)
    x_ref = reference(opt, x0, o_ref, steps, 1.0 / o_ref.info().curvature)
    x_new = _new(opt, x0, o_new, steps, o_new.info())
    assert o_new.evals == o_ref.evals
    # float64 (the old TONGA kept its factor in float32): only the order of the sums differs
    assert _rel(x_new, x_ref) < 1e-7
    assert np.linalg.norm(x_new - x0) > 0.1 * np.linalg.norm(o_new.minimiser)     # it moved


@pytest.mark.parametrize("name, steps", [("olbfgs", 12), ("tonga", 25)])
def test_same_iterates_as_plain_algorithm_on_tiny_float32(tiny, name, steps):
    """The real objective in float32, the default hyperparameters (m = 30, rank 20)."""
    opt = get_optimizer(name)
    curvature = 50.0
    info = OptimizerInfo(tiny.n_train, tiny.shape, None, curvature)
    x0 = tiny.initial_density(0)
    x_ref = {"olbfgs": _reference_olbfgs, "tonga": _reference_tonga}[name](opt, x0, tiny.oracle(), steps,
                                                                           1.0 / curvature)
    x_new = _new(opt, x0, tiny.oracle(), steps, info)
    assert x_new.dtype == np.float32
    assert _rel(x_new, x_ref) < 1e-5
    assert np.linalg.norm(x_new - x0) > 1e-3 * np.linalg.norm(x0)


def test_two_loop_coefficients_match_vector_recursion():
    rng = np.random.default_rng(3)
    n, k = 40, 7
    s = rng.standard_normal((k, n))
    y = s + 0.3 * rng.standard_normal((k, n))             # s.y > 0
    g = rng.standard_normal(n)
    r_g, r_s, r_y = two_loop_coefficients(s @ g, y @ g, s @ y.T, y @ y.T)
    direct = _reference_two_loop(g, tuple((s[i], y[i], 1.0 / (s[i] @ y[i])) for i in range(k)), 1.0)
    np.testing.assert_allclose(r_g * g + r_s @ s + r_y @ y, direct, rtol=1e-12, atol=1e-12)
