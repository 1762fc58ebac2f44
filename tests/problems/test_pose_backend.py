"""The array-module pose backend (GPU path) against the CPU path, run with numpy as the module."""
import numpy as np
import pytest

from problems.model.grids import make_band
from problems.model.marginal import MarginalLikelihood
from problems.model.pose_backend import array_module
from problems.model.poses import make_quadrature


def _setup(rng, dtype, n=12, r_max=2.5, shift_extent=1.5, n_img=5):
    band = make_band(r_max)
    quad = make_quadrature(r_max, shift_extent=shift_extent)
    cpu = MarginalLikelihood(n, band, quad, 2.0, dtype=dtype)
    dev = MarginalLikelihood(n, band, quad, 2.0, dtype=dtype, device="numpy")
    images = rng.standard_normal((n_img, band.size)) + 1j * rng.standard_normal((n_img, band.size))
    ctf = rng.uniform(-1, 1, (n_img, band.size))
    x = rng.standard_normal((n, n, n)).astype(dtype)
    return cpu, dev, cpu.prepare(images, ctf), x


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_array_module_backend_matches_cpu_path(rng, dtype, tol):
    cpu, dev, terms, x = _setup(rng, dtype)
    assert cpu.quadrature.n_shifts == 9
    f_cpu, g_cpu = cpu.nll_and_grad(x, terms)
    f_dev, g_dev = dev.nll_and_grad(x, terms)
    assert g_dev.dtype == g_cpu.dtype == dtype
    np.testing.assert_allclose(f_dev, f_cpu, rtol=tol)
    np.testing.assert_allclose(dev.nll(x, terms), f_cpu, rtol=tol)
    assert np.linalg.norm(g_dev - g_cpu) <= tol * np.linalg.norm(g_cpu)
    v = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    h_cpu, h_dev = cpu.hvp(x, v, terms), dev.hvp(x, v, terms)
    assert np.linalg.norm(h_dev - h_cpu) <= 5 * tol * np.linalg.norm(h_cpu)


def test_array_module_backend_gradient_is_the_derivative(rng):
    """Not just equal to the CPU path: the backend's own gradient matches differences."""
    _, dev, terms, x = _setup(rng, np.float64)
    _, g = dev.nll_and_grad(x, terms)
    d = rng.standard_normal(x.shape)
    h = 1e-5
    fd = (dev.nll(x + h * d, terms).mean() - dev.nll(x - h * d, terms).mean()) / (2 * h)
    assert abs(fd - np.sum(g * d)) < 1e-6 * abs(fd)


def test_device_names_are_checked():
    assert array_module("numpy") is np
    with pytest.raises(ValueError, match="unknown device"):
        array_module("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="CuPy"):
            array_module("cuda")
