"""Known-pose refinement problem, exact spectra, diagonal preconditioning, Hutchinson (issue 7)."""
import numpy as np
import pytest

from problems.model.spectra import (BandBasis, KnownPoseHessian, dense_hessian, extreme_eigenvalues,
                                    hutchinson_diagonal, relative_error, scaled_operator)
from problems import BudgetExhausted, OracleInputError, load_problem


@pytest.fixture(scope="module")
def refine_tiny():
    return load_problem("refine-known-poses", scale="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_dense(refine_tiny):
    hess = KnownPoseHessian(refine_tiny)
    return hess, dense_hessian(hess.operator())


def test_band_basis_is_orthonormal_and_real():
    basis = BandBasis(12, 4.5)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(basis.size)
    x = basis.to_volume(a)
    assert x.dtype == np.float64 and x.shape == (12, 12, 12)
    np.testing.assert_allclose(basis.from_volume(x), a, atol=1e-12)
    np.testing.assert_allclose(np.sum(x * x), a @ a, rtol=1e-12)
    with pytest.raises(ValueError):
        BandBasis(12, 6.0)          # Nyquist would enter


def test_lanczos_kappa_matches_dense(tiny_dense):
    hess, h = tiny_dense
    w = np.linalg.eigvalsh(h)
    spec = extreme_eigenvalues(hess.operator(), tol=1e-10)
    assert w[0] > 0
    np.testing.assert_allclose([spec.lambda_max, spec.lambda_min], [w[-1], w[0]], rtol=1e-7)
    np.testing.assert_allclose(spec.kappa, w[-1] / w[0], rtol=1e-7)


def test_exact_diagonal_and_preconditioned_kappa_match_dense(tiny_dense):
    hess, h = tiny_dense
    d = hess.exact_diagonal()
    np.testing.assert_allclose(d, np.diag(h), rtol=1e-10, atol=1e-12 * np.abs(d).max())
    w = np.linalg.eigvalsh(h / np.sqrt(np.outer(d, d)))
    spec = extreme_eigenvalues(scaled_operator(hess.operator(), d), tol=1e-10)
    np.testing.assert_allclose(spec.kappa, w[-1] / w[0], rtol=1e-6)
    assert spec.kappa < np.linalg.eigvalsh(h)[-1] / np.linalg.eigvalsh(h)[0]


def test_hutchinson_converges_to_exact_diagonal_and_is_charged(refine_tiny, tiny_dense):
    hess, _ = tiny_dense
    exact = hess.exact_diagonal()
    oracle = refine_tiny.oracle()
    res = hutchinson_diagonal(oracle, hess.basis, 256, 50, np.random.default_rng(3), checkpoints=[4, 64, 256])
    errors = [relative_error(e, exact) for e in res.estimates]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.06 and errors[0] / errors[2] > 4        # ~ 1/sqrt(k)
    assert res.cost == oracle.evals == 256 * 50 * 2.0


def test_oracle_gradient_matches_finite_differences_and_hvp_is_symmetric(refine_tiny):
    oracle = refine_tiny.oracle(dtype=np.float64)
    rng = np.random.default_rng(1)
    x, v, w = (rng.standard_normal(refine_tiny.shape) for _ in range(3))
    idx = oracle.next_batch(40)
    _, g = oracle.value_and_grad(x, idx)
    eps = 1e-5
    fd = (oracle.value(x + eps * v, idx) - oracle.value(x - eps * v, idx)) / (2 * eps)
    np.testing.assert_allclose(np.sum(g * v), fd, rtol=1e-7)
    hv, hw = oracle.hvp(x, v, idx), oracle.hvp(x, w, idx)
    np.testing.assert_allclose(np.sum(w * hv), np.sum(v * hw), rtol=1e-10)
    np.testing.assert_allclose(oracle.hvp(x, 2 * v - 3 * w, idx), 2 * hv - 3 * hw, atol=1e-10 * np.abs(hv).max())
    np.testing.assert_allclose(oracle.hvp(2 * x, v, idx), hv, rtol=1e-12)        # constant Hessian
    g2 = oracle.value_and_grad(x + eps * v, idx)[1] - oracle.value_and_grad(x - eps * v, idx)[1]
    np.testing.assert_allclose(g2 / (2 * eps), hv, atol=1e-6 * np.abs(hv).max())


def test_oracle_accounting_and_validation(refine_tiny):
    oracle = refine_tiny.oracle(budget=35)
    x = refine_tiny.initial_density(0)
    idx = oracle.next_batch(10)
    oracle.value(x, idx)
    oracle.value_and_grad(x, idx)
    oracle.hvp(x, x, idx)
    assert oracle.evals == 10 * (0.5 + 1 + 2)
    with pytest.raises(BudgetExhausted):
        oracle.value_and_grad(x, idx)
    with pytest.raises(OracleInputError):
        oracle.value(x[:-1], idx)
    with pytest.raises(OracleInputError):
        oracle.value(x, [oracle.n_train])
    with pytest.raises(ValueError):
        load_problem("refine-known-poses", scale="tiny", r_max_fraction=0.9)   # r_max >= N/2 - 1


def test_sgd_from_optimizers_runs_and_reduces_the_objective(refine_tiny):
    from optimizers import OptimizerInfo, get_optimizer
    oracle = refine_tiny.oracle(budget=6 * refine_tiny.n_train)
    x = refine_tiny.initial_density(0)
    opt = get_optimizer("sgd", lr=0.2, batch_size=50)
    rng = np.random.default_rng(0)
    state = opt.init(x, OptimizerInfo(oracle.n_train, oracle.shape, oracle.budget), rng)
    start = refine_tiny.test_nll(x)
    while True:
        try:
            x, state = opt.step(x, state, oracle, rng)
        except BudgetExhausted:
            break
    assert np.isfinite(x).all() and refine_tiny.test_nll(x) < start


def _kappas(fractions, tol):
    out = []
    for frac in fractions:
        hess = KnownPoseHessian(load_problem("refine-known-poses", scale="small", seed=0, r_max_fraction=frac))
        op = hess.operator()
        out.append((extreme_eigenvalues(op, tol=tol).kappa,
                    extreme_eigenvalues(scaled_operator(op, hess.exact_diagonal()), tol=tol).kappa))
    return out


def test_kappa_grows_with_band_and_preconditioner_helps_on_small():
    (k1, p1), (k2, p2) = _kappas((0.25, 0.5), tol=1e-4)
    assert k1 < k2 and p2 < k2 / 2


@pytest.mark.slow
def test_kappa_grows_up_to_the_highest_band_on_small():
    res = _kappas((0.25, 0.5, 0.75, 0.875), tol=1e-5)
    kappas = [k for k, _ in res]
    assert all(a < b for a, b in zip(kappas, kappas[1:]))
    assert res[-1][1] < res[-1][0] / 5
