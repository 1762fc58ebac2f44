"""The array-module path (GPU code, run with numpy as the module) against the CPU path and finite differences."""
import sys

import numpy as np
import pytest

from problems import load_problem
from problems.model.devices import DeviceRows, array_module
from problems.model.grids import make_band
from problems.model.marginal import MarginalLikelihood, make_likelihood
from problems.model.poses import make_quadrature
from problems.model.prior import DensityPrior
from problems.model.xp_marginal import DeviceLikelihood


def _rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


def _setup(rng, dtype, n=12, r_max=2.5, shift_extent=1.5, n_img=5):
    band = make_band(r_max)
    quad = make_quadrature(r_max, shift_extent=shift_extent)
    cpu = MarginalLikelihood(n, band, quad, 2.0, dtype=dtype)
    dev = make_likelihood(n, band, quad, 2.0, dtype=dtype, device="numpy")
    images = rng.standard_normal((n_img, band.size)) + 1j * rng.standard_normal((n_img, band.size))
    ctf = rng.uniform(-1, 1, (n_img, band.size))
    x = rng.standard_normal((n, n, n)).astype(dtype)
    return cpu, dev, (images, ctf), x


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_every_call_matches_the_cpu_path(rng, dtype, tol):
    cpu, dev, (images, ctf), x = _setup(rng, dtype)
    assert isinstance(dev, DeviceLikelihood) and cpu.quadrature.n_shifts == 9
    tc, td = cpu.prepare(images, ctf), dev.prepare(images, ctf)
    f_cpu, g_cpu = cpu.nll_and_grad(x, tc)
    f_dev, g_dev = dev.nll_and_grad(x, td)
    assert g_dev.dtype == g_cpu.dtype == dtype
    np.testing.assert_allclose(f_dev, f_cpu, rtol=tol)
    np.testing.assert_allclose(dev.nll(x, td), f_cpu, rtol=tol)
    assert _rel(g_dev, g_cpu) <= tol
    v = rng.standard_normal(x.shape).astype(dtype)
    assert _rel(dev.hvp(x, v, td), cpu.hvp(x, v, tc)) <= 5 * tol
    for hard in (False, True):
        (za_c, zq_c), (za_d, zq_d) = cpu.expectation(x, tc, hard), dev.expectation(x, td, hard)
        assert _rel(za_d, za_c) <= 5 * tol and _rel(zq_d, zq_c) <= 5 * tol
    assert _rel(dev.posterior(x, td)[0], cpu.posterior(x, tc)[0]) <= 20 * tol
    q_c, gq_c = cpu.complete_data_objective(x, za_c, zq_c, 5)
    q_d, gq_d = dev.complete_data_objective(x, za_c, zq_c, 5)
    assert abs(q_d - q_c) <= tol * abs(q_c) and _rel(gq_d, gq_c) <= tol
    s = cpu.slices(x)
    assert _rel(dev.slices(x), s) <= tol
    assert _rel(dev.slices_adjoint(s), cpu.slices_adjoint(s)) <= tol


def test_prior_in_the_device_pass_is_the_cpu_prior(rng):
    cpu, dev, (images, ctf), x = _setup(rng, np.float64)
    prior, scale = DensityPrior(3e-2, 1e-1), 0.25
    td = dev.prepare(images, ctf)
    nll, grad = dev.nll_and_grad(x, td)
    expect = grad.copy()
    value = prior.value_and_accumulate_grad(x, expect, scale)
    nll2, value2, grad2 = dev.grad_with_prior(x, td, prior, scale)
    np.testing.assert_allclose(nll2, nll)
    assert abs(value2 - value) <= 1e-12 * abs(value) and _rel(grad2, expect) <= 1e-12
    assert abs(dev.value_with_prior(x, td, prior)[1] - value) <= 1e-12 * abs(value)
    v = rng.standard_normal(x.shape)
    expect_h = dev.hvp(x, v, td) + scale * prior.hess_diag(x) * v
    assert _rel(dev.hvp_with_prior(x, v, td, prior, scale), expect_h) <= 1e-12


def test_device_gradient_and_hvp_are_the_derivatives(rng):
    """Not just equal to the CPU path: the device path's own derivatives match differences."""
    _, dev, (images, ctf), x = _setup(rng, np.float64)
    terms = dev.prepare(images, ctf)
    _, g = dev.nll_and_grad(x, terms)
    d = rng.standard_normal(x.shape)
    h = 1e-5
    fd = (dev.nll(x + h * d, terms).mean() - dev.nll(x - h * d, terms).mean()) / (2 * h)
    assert abs(fd - np.sum(g * d)) < 1e-6 * abs(fd)
    g_fd = (dev.nll_and_grad(x + h * d, terms)[1] - dev.nll_and_grad(x - h * d, terms)[1]) / (2 * h)
    assert _rel(dev.hvp(x, d, terms), g_fd) < 1e-5


def test_problem_on_the_device_agrees_with_the_cpu_problem():
    """load_problem(device=...): oracle calls, held-out NLLs and the validation split follow the device."""
    p = load_problem("synthetic", scale="tiny", progress=False)
    x = p.initial_density(0)
    idx = np.arange(40)
    cpu = p.oracle()
    f_c, g_c = cpu.value_and_grad(x, idx)
    test_c, score_c = p.test_nll(x), p.score_nll(x)
    h_c = cpu.hvp(x, x, idx)
    dev_p = load_problem("synthetic", scale="tiny", progress=False, device="numpy")
    assert dev_p.device == "numpy" and dev_p.metadata["content_hash"] == p.metadata["content_hash"]
    oracle = dev_p.oracle(budget=1000)
    assert isinstance(oracle._images, DeviceRows)
    f_d, g_d = oracle.value_and_grad(x, idx)
    assert abs(f_d - f_c) <= 1e-6 * abs(f_c) and _rel(g_d, g_c) <= 1e-5
    assert abs(oracle.value(x, idx) - f_c) <= 1e-6 * abs(f_c)
    assert _rel(oracle.hvp(x, x, idx), h_c) <= 1e-5
    assert oracle.evals == 40 + 20 + 80
    assert abs(dev_p.test_nll(x) - test_c) <= 1e-6 * abs(test_c)
    assert abs(dev_p.score_nll(x) - score_c) <= 1e-6 * abs(score_c)
    assert dev_p.validation_split(50).device == "numpy"
    assert dev_p.use_device("cpu").likelihood().device == "cpu"


def test_cuda_without_cupy_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)            # import cupy -> ImportError, GPU or not
    with pytest.raises(RuntimeError, match="needs CuPy"):
        array_module("cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        load_problem("synthetic", scale="tiny", progress=False, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        array_module("tpu")
    from bench.cli import main
    with pytest.raises(SystemExit, match="--device cuda: device='cuda' needs CuPy"):
        main(["run", "--problem", "synthetic", "--scale", "tiny", "--device", "cuda"])


def test_device_environment_default(monkeypatch):
    """--device exports $CRYOOPT_DEVICE, the default of load_problem (worker processes follow it)."""
    monkeypatch.setenv("CRYOOPT_DEVICE", "numpy")
    assert load_problem("synthetic", scale="tiny", progress=False).device == "numpy"
    monkeypatch.setenv("CRYOOPT_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="unknown device"):
        load_problem("synthetic", scale="tiny", progress=False)


@pytest.mark.slow
def test_float32_device_against_float64_cpu_at_paper_scale():
    """The realistic paper geometry (D = 167, 93,056 rotations x 13 shifts), 100 images drawn from the
    model at quadrature poses with in-band SNR 1: float32 on the array-module path vs float64 on the
    CPU path (measured: NLL 5e-7, gradient 4e-5, posterior total variation 1e-4, as the CPU's float32)."""
    rng = np.random.default_rng(3)
    n, r_max = 128, 0.16 * 64
    band, quad = make_band(r_max), make_quadrature(r_max, shift_extent=2.0)
    cpu = MarginalLikelihood(n, band, quad, 1.0, dtype=np.float64)
    dev = DeviceLikelihood(n, band, quad, 1.0, dtype=np.float32, device="numpy")
    truth = np.zeros((n,) * 3)
    truth[48:80, 56:72, 40:88] = 1.0
    truth += 0.3 * rng.standard_normal(truth.shape)
    b = 100
    j, sh = rng.integers(0, quad.n_base, b), rng.integers(0, quad.n_shifts, b)
    ramp = np.exp(-2j * np.pi * (quad.shifts[sh] @ band.k.T.astype(float)) / n)
    ctf = rng.uniform(-1, 1, (b, band.size))
    signal = ctf * ramp * cpu.slices(truth)[j]
    a = 1 / np.sqrt(np.mean(np.abs(signal) ** 2))
    images = a * signal + (rng.standard_normal((b, band.size)) + 1j * rng.standard_normal((b, band.size))) / np.sqrt(2)
    x = (a * truth + 0.1 * a * rng.standard_normal(truth.shape)).astype(np.float32)
    f64, g64 = cpu.nll_and_grad(x.astype(np.float64), cpu.prepare(images, ctf))
    f32, g32 = dev.nll_and_grad(x, dev.prepare(images, ctf))
    assert np.max(np.abs(f32 - f64) / np.abs(f64)) < 1e-5
    assert _rel(g32, g64) < 1e-3
    # posterior mass: total variation between the two posteriors over all 1.2M poses, 10 images
    small = slice(0, 10)
    p64, _ = cpu.posterior(x.astype(np.float64), cpu.prepare(images[small], ctf[small]))
    p32, _ = dev.posterior(x, dev.prepare(images[small], ctf[small]))
    assert p64.max(axis=1).min() > 0.01             # a peaked posterior: the test is not vacuous
    assert (0.5 * np.abs(p32.astype(np.float64) - p64).sum(axis=1)).max() < 1e-2
