"""The free Fourier volume's known-pose model (Toader et al.) against a dense brute force at tiny n."""
import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from problems.model.fourier_volume import FourierVolumeLikelihood, density_to_fourier
from problems.model.known_pose import GaussianPrior
from problems.model.likelihoods import FourierVolumePart
from problems.oracle import CountingOracle

N, SIGMA = 8, 1.3


def batch(lik, b, seed):
    rng = np.random.default_rng(seed)
    t = lik.k.shape[0]
    rot = Rotation.random(b, random_state=seed).as_matrix()
    y = rng.standard_normal((b, t)) + 1j * rng.standard_normal((b, t))
    return rot, y, rng.uniform(-1, 1, (b, t))


def dense_slices(lik, rot, order):
    """S (B, T, n^3) real, by scipy's own interpolation applied to every unit volume."""
    n = lik.n
    q = lik.k[None, :, 0:1] * rot[:, None, 0, :] + lik.k[None, :, 1:2] * rot[:, None, 1, :] + n // 2
    coords = np.stack([q[..., 2], q[..., 1], q[..., 0]]).reshape(3, -1)
    cols = []
    for j in range(n**3):
        e = np.zeros(n**3)
        e[j] = 1.0
        cols.append(map_coordinates(e.reshape((n,) * 3), coords, order=order, mode="constant"))
    return np.stack(cols, axis=-1).reshape(rot.shape[0], lik.k.shape[0], n**3)


@pytest.mark.parametrize("interp", ["tri", "nn"])
def test_against_dense_matrix(interp):
    lik = FourierVolumeLikelihood(N, N / 2 - 1, SIGMA, interp, np.float64)
    rot, y, c = batch(lik, 3, 1)
    s = dense_slices(lik, rot, 1 if interp == "tri" else 0)
    rng = np.random.default_rng(2)
    v = rng.standard_normal(N**3) + 1j * rng.standard_normal(N**3)
    u = rng.standard_normal(N**3) + 1j * rng.standard_normal(N**3)
    x = lik.real_view(v)
    terms = lik.prepare(y, c, rot)
    r = c * np.einsum("btj,j->bt", s, v) - y
    np.testing.assert_allclose(lik.nll(x, terms), np.sum(abs(r) ** 2, 1) / (2 * SIGMA**2), rtol=1e-12)
    nll, g = lik.nll_and_grad(x, terms)
    grad = np.einsum("btj,bt->j", s, c * r) / (SIGMA**2 * 3)
    np.testing.assert_allclose(g.view(complex), grad, atol=1e-12)
    h = np.einsum("btj,bt,btk->jk", s, c**2, s) / (SIGMA**2 * 3)
    np.testing.assert_allclose(lik.hvp(x, lik.real_view(u), terms).view(complex), h @ u, atol=1e-12)
    np.testing.assert_allclose(lik.hess_diag(terms).ravel(), np.diag(h), atol=1e-12)
    if interp == "nn":                       # a 0/1 selection: H is exactly diagonal
        assert np.count_nonzero(h - np.diag(np.diag(h))) == 0
    else:
        assert np.abs(h - np.diag(np.diag(h))).max() > 1e-3


def test_gradient_and_hvp_by_finite_differences_through_the_oracle():
    lik = FourierVolumeLikelihood(N, N / 2 - 1, SIGMA, "tri", np.float64)
    rot, y, c = batch(lik, 20, 3)
    oracle = CountingOracle("fv", lik, GaussianPrior(0.5), y, c, None, 0, poses=(rot,))
    assert oracle.shape == (2 * N**3,)
    rng = np.random.default_rng(4)
    x, d = rng.standard_normal(oracle.shape), rng.standard_normal(oracle.shape)
    idx = np.arange(7)
    f, g = oracle.value_and_grad(x, idx)
    eps = 1e-5
    fd = (oracle.value(x + eps * d, idx) - oracle.value(x - eps * d, idx)) / (2 * eps)
    assert fd == pytest.approx(g @ d, rel=1e-7)
    fd_h = (oracle.value_and_grad(x + eps * d, idx)[1] - oracle.value_and_grad(x - eps * d, idx)[1]) / (2 * eps)
    np.testing.assert_allclose(oracle.hvp(x, d, idx), fd_h, atol=1e-6 * np.abs(fd_h).max())


def test_shifts_are_the_phase_of_the_model():
    lik = FourierVolumeLikelihood(N, N / 2 - 1, SIGMA, "tri", np.float64)
    rot, y, c = batch(lik, 4, 5)
    shifts = np.random.default_rng(6).uniform(-2, 2, (4, 2))
    x = np.random.default_rng(7).standard_normal(lik.shape)
    plain = lik.prepare(y, c, rot)
    s = lik.slices(x, plain)
    phase = np.exp(-2j * np.pi * (shifts @ lik.k.T) / N)
    want = np.sum(abs(y - c * phase * s) ** 2, 1) / (2 * SIGMA**2)
    np.testing.assert_allclose(lik.nll(x, lik.prepare(y, c, rot, shifts)), want, rtol=1e-12)


def test_float32_threaded_matches_float64():
    n = 16
    lik32 = FourierVolumeLikelihood(n, n / 2 - 1, 1.0, "tri", np.float32)
    lik64 = FourierVolumeLikelihood(n, n / 2 - 1, 1.0, "tri", np.float64)
    rot, y, c = batch(lik64, 40, 8)
    x = np.random.default_rng(9).standard_normal(lik64.shape)
    _, g64 = lik64.nll_and_grad(x, lik64.prepare(y, c, rot))
    _, g32 = lik32.nll_and_grad(x.astype(np.float32), lik32.prepare(y, c, rot))
    assert np.abs(g32 - g64).max() < 1e-5 * np.abs(g64).max()


def test_central_slice_of_a_density_is_the_unitary_dft_of_its_projection():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((N,) * 3)
    part = FourierVolumePart(N, N / 2 - 1, 1.0)
    lik = part.build(np.float64)
    v = part.from_density(x).astype(np.float64)
    terms = lik.prepare(np.zeros((1, part.band.size)), np.ones((1, part.band.size)), np.eye(3)[None])
    proj = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.sum(axis=0)))) / N
    want = proj[part.band.k[:, 1] + N // 2, part.band.k[:, 0] + N // 2]
    np.testing.assert_allclose(lik.slices(v, terms)[0], want, atol=1e-5 * abs(want).max())
    np.testing.assert_allclose(density_to_fourier(x)[N // 2, N // 2, N // 2], x.sum() / N)


def test_radius_beyond_the_grid_is_refused():
    with pytest.raises(ValueError, match="r_max"):
        FourierVolumeLikelihood(N, N / 2 - 0.5, 1.0)


@pytest.mark.parametrize("interp", ["tri", "nn"])
def test_assembled_hessian_is_the_hvp_and_its_ball_spectrum(interp):
    from problems.model.fourier_hessian import assemble_hessian, extreme_eigenvalues
    n = 10
    lik = FourierVolumeLikelihood(n, n / 2 - 1, SIGMA, interp, np.float64)
    rot, y, c = batch(lik, 30, 11)
    hess = assemble_hessian(lik, c, rot, lam=1e-3, chunk=7)           # several chunks: the sum over them
    u = np.random.default_rng(12).standard_normal(n**3) + 1j * np.random.default_rng(13).standard_normal(n**3)
    want = lik.hvp(None, lik.real_view(u), lik.prepare(y, c, rot)).view(complex) + 1e-3 * u
    np.testing.assert_allclose(hess.matvec(u), want, atol=1e-12 * np.abs(want).max())
    dense = np.stack([hess.matvec(e) for e in np.eye(n**3)], axis=1)
    inside = np.flatnonzero(hess.radius() <= 3.5)
    exact = np.linalg.eigvalsh(dense[np.ix_(inside, inside)])
    op, diag = hess.ball_operator(3.5)
    np.testing.assert_allclose(op.matvec(np.eye(inside.size)[:, 5]), dense[np.ix_(inside, inside)][:, 5], atol=1e-14)
    spec = extreme_eigenvalues(op, diag, tol=1e-9, maxiter=500)
    assert spec["lambda_max"] == pytest.approx(exact[-1], rel=1e-6)
    assert spec["lambda_min"] == pytest.approx(exact[0], rel=1e-6)
    assert spec["residual_min"] < 1e-6
