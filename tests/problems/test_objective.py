"""The fast objective against the brute-force reference, derivatives against differences."""
import numpy as np
import pytest
from reference import reference_log_joint, reference_nll
from scipy.special import softmax

from problems.model.ctf import CTFParams, evaluate_ctf
from problems.data.units import ctf_from_microscope
from problems.model.fourier import PartialDFT, image_band_coefficients
from problems.model.grids import make_band, quarter_turn_maps
from problems.data.io import read_particle_star
from problems.model.marginal import MarginalLikelihood
from problems.model.poses import make_quadrature
from problems.model.prior import DensityPrior
from problems.model.projector import Slicer, slice_coordinates


def _random_setup(rng, n=16, r_max=2.5, shift_extent=1.0, n_img=3):
    band = make_band(r_max)
    quad = make_quadrature(r_max, shift_extent=shift_extent, shift_sigma=1.0)
    ctf = ctf_from_microscope(
        pixel_size=5.0, defocus_u_angstrom=rng.uniform(1e4, 3e4, n_img),
        defocus_v_angstrom=rng.uniform(1e4, 3e4, n_img), astigmatism_angle_deg=rng.uniform(0, 180, n_img),
        voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.1, bfactor_angstrom2=rng.uniform(0, 200, n_img))
    images = 3 * rng.standard_normal((n_img, n, n))
    return band, quad, ctf, images


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_fast_nll_matches_reference_with_shifts(rng, dtype, tol):
    n, r_max = 16, 2.5
    band, quad, ctf, images = _random_setup(rng, n, r_max)
    x = rng.standard_normal((n, n, n))
    lik = MarginalLikelihood(n, band, quad, sigma=1.3, dtype=dtype)
    terms = lik.prepare(image_band_coefficients(images, band.k), evaluate_ctf(ctf, band.k / n))
    fast = lik.nll(x, terms)
    ref = reference_nll(x, images, ctf, quad, 1.3, r_max)
    np.testing.assert_allclose(fast, ref, rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_pair_posterior_matches_reference_pose_by_pose(rng, dtype, tol):
    """Every pose's posterior, incl. the psi + pi turns that the conjugate pairs
    never multiply explicitly, against brute force with 13 shifts."""
    n, r_max = 16, 2.5
    band, quad, ctf, images = _random_setup(rng, n, r_max, shift_extent=2.0, n_img=2)
    assert quad.n_shifts == 13 and quad.n_psi % 4 == 0
    x = rng.standard_normal((n, n, n))
    lik = MarginalLikelihood(n, band, quad, sigma=2.0, dtype=dtype)
    terms = lik.prepare(image_band_coefficients(images, band.k), evaluate_ctf(ctf, band.k / n))
    post, nll = lik.posterior(x, terms)                     # pose order (shift, turn, dir, psi/4)
    joint = reference_log_joint(x, images, ctf, quad, 2.0, r_max)   # order (dir, psi, shift)
    n4 = quad.n_psi // 4
    s, q, d, l4 = np.meshgrid(np.arange(quad.n_shifts), np.arange(4), np.arange(quad.n_dir),
                              np.arange(n4), indexing="ij")
    ref_index = ((d * quad.n_psi + l4 + q * n4) * quad.n_shifts + s).ravel()
    ref_post = softmax(joint, axis=1)[:, ref_index]
    assert ref_post.max() > 1e-3                             # not a flat posterior
    np.testing.assert_allclose(post, ref_post, rtol=tol, atol=tol * ref_post.max())
    np.testing.assert_allclose(nll, reference_nll(x, images, ctf, quad, 2.0, r_max), rtol=tol)


def test_gradient_hvp_and_estep_with_shifts(rng):
    """float64 with 13 shifts: gradient and HVP against central differences, and the
    E-step sums against the gradient (Fisher's identity: the complete-data
    objective built from P(x) has the marginal gradient at x)."""
    n, r_max = 12, 2.5
    band, quad, ctf, images = _random_setup(rng, n, r_max, shift_extent=2.0, n_img=4)
    lik = MarginalLikelihood(n, band, quad, sigma=3.0, dtype=np.float64)
    terms = lik.prepare(image_band_coefficients(images, band.k), evaluate_ctf(ctf, band.k / n))
    x = rng.standard_normal((n, n, n))
    nll, g = lik.nll_and_grad(x, terms)
    d = rng.standard_normal(x.shape)
    h = 1e-5
    fd = (lik.nll(x + h * d, terms).mean() - lik.nll(x - h * d, terms).mean()) / (2 * h)
    assert abs(fd - np.sum(g * d)) < 1e-6 * abs(fd)
    fd_h = (lik.nll_and_grad(x + h * d, terms)[1] - lik.nll_and_grad(x - h * d, terms)[1]) / (2 * h)
    hv = lik.hvp(x, d, terms)
    assert np.linalg.norm(hv - fd_h) < 1e-5 * np.linalg.norm(fd_h)
    za, zq = lik.expectation(x, terms)
    _, g_q = lik.complete_data_objective(x, za, zq, terms.size)
    np.testing.assert_allclose(g_q, g, rtol=1e-9, atol=1e-12 * np.abs(g).max())
    za_h, zq_h = lik.expectation(x, terms, hard=True)
    np.testing.assert_allclose(zq_h.sum(), terms.xq[:terms.size].sum(), rtol=1e-12)


def test_fast_nll_matches_reference_on_tiny_problem(tiny):
    """The tiny problem's own images (read back from its STAR/MRC files) at the ground truth."""
    from problems.data.cache import dataset_dir
    from problems.catalog.synthetic import synthetic_spec
    stack = read_particle_star(dataset_dir(synthetic_spec("tiny"), 0) / "particles.star")
    images = next(stack.iter_chunks(4))[1]
    ctf = stack.ctf.subset(slice(0, 4))
    x = tiny.ground_truth
    lik = tiny.likelihood(np.float32)
    terms = lik.prepare(image_band_coefficients(images, tiny.band.k),
                        evaluate_ctf(ctf, tiny.band.k / tiny.box_size))
    ref = reference_nll(x, images, ctf, tiny.quadrature, tiny.sigma, tiny.band.r_max)
    np.testing.assert_allclose(lik.nll(x, terms), ref, rtol=1e-5)


def test_fourier_slice_theorem_normalisation(rng):
    """Identity pose: the slice is the unitary 2D DFT of the plain projection (sum over z)."""
    n, r_max = 20, 4.0
    band = make_band(r_max)
    x = rng.standard_normal((n, n, n))
    dft = PartialDFT(n, int(np.ceil(2 * r_max)) + 1, np.float64)
    slicer = Slicer(slice_coordinates(np.eye(3)[None], band.k, np.float64), dft.m_max)
    sl = slicer.forward(dft.forward(x))[0]
    expected = image_band_coefficients(x.sum(axis=0)[None], band.k)[0]
    np.testing.assert_allclose(sl, expected, rtol=1e-10, atol=1e-10)


def _inner(a, b):
    return float(np.sum(a.real * b.real + a.imag * b.imag))


def test_adjoints(rng):
    n, r_max = 14, 3.0
    band = make_band(r_max)
    quad = make_quadrature(r_max)
    lik = MarginalLikelihood(n, band, quad, 1.0, dtype=np.float64)
    k = lik.dft.k
    cube = rng.standard_normal((k, k, k)) + 1j * rng.standard_normal((k, k, k))
    y = rng.standard_normal((quad.n_base, band.size)) + 1j * rng.standard_normal((quad.n_base, band.size))
    lhs, rhs = _inner(lik.slicer.forward(cube), y), _inner(cube, lik.slicer.adjoint(y))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    x = rng.standard_normal((n, n, n))
    lhs, rhs = _inner(lik.dft.forward(x), cube), float(np.sum(x * lik.dft.adjoint(cube)))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    lhs, rhs = _inner(lik.slices(x), y), float(np.sum(x * lik.slices_adjoint(y)))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_quarter_turn_maps_are_permutations():
    band = make_band(5.3)
    index, conj = quarter_turn_maps(band)
    for q in range(4):
        assert sorted(index[q]) == list(range(band.size))
    assert not conj[0].any() and (index[0] == np.arange(band.size)).all()
    # rot^-2 = -k: every non-DC coefficient maps to its own conjugate
    assert (index[2] == np.arange(band.size)).all() and conj[2, 1:].all()
    # so turn 3 is turn 1 conjugated: the conjugate pairs of the fast path
    assert (index[3] == index[1]).all() and (conj[3, 1:] != conj[1, 1:]).all()


def _directional_check(oracle, x, idx, rng, n_dirs=3):
    f, g = oracle.value_and_grad(x, idx)
    errors = []
    for _ in range(n_dirs):
        d = rng.standard_normal(x.shape)
        h = 1e-4 / np.linalg.norm(d) * np.linalg.norm(x)
        fd = (oracle.value(x + h * d, idx) - oracle.value(x - h * d, idx)) / (2 * h)
        errors.append(abs(fd - np.sum(g * d)) / abs(fd))
    return max(errors)


def test_gradient_matches_central_differences(tiny, rng):
    oracle = tiny.oracle(dtype=np.float64)
    x = tiny.initial_density(1).astype(np.float64) - 0.05 * tiny.ground_truth.max()  # some voxels < 0
    assert (x < 0).any() and (x > 0).any()
    idx = np.arange(0, 30)
    assert _directional_check(oracle, x, idx, rng) < 1e-4


def test_hvp_matches_gradient_differences(tiny, rng):
    oracle = tiny.oracle(dtype=np.float64)
    x = tiny.initial_density(2).astype(np.float64) - 0.05 * tiny.ground_truth.max()
    idx = np.arange(10, 40)
    v = rng.standard_normal(x.shape)
    h = 1e-4 * np.linalg.norm(x) / np.linalg.norm(v)
    fd = (oracle.value_and_grad(x + h * v, idx)[1] - oracle.value_and_grad(x - h * v, idx)[1]) / (2 * h)
    hv = oracle.hvp(x, v, idx)
    assert np.linalg.norm(hv - fd) / np.linalg.norm(fd) < 1e-5
    # symmetric: <u, H v> = <v, H u>
    u = rng.standard_normal(x.shape)
    a, b = np.sum(u * hv), np.sum(v * oracle.hvp(x, u, idx))
    assert abs(a - b) < 1e-8 * abs(a)


def test_float32_gradient_agrees_with_float64(tiny):
    x = tiny.initial_density(3)
    idx = np.arange(50)
    f64, g64 = tiny.oracle(dtype=np.float64).value_and_grad(x.astype(np.float64), idx)
    f32, g32 = tiny.oracle().value_and_grad(x, idx)
    assert g32.dtype == np.float32
    assert abs(f32 - f64) < 1e-5 * abs(f64)
    assert np.linalg.norm(g32 - g64) < 1e-4 * np.linalg.norm(g64)


def test_prior_value_gradient_hessian(rng):
    prior = DensityPrior(lambda_plus=0.3, lambda_minus=2.0)
    x = np.array([-2.0, -0.5, 0.0, 0.25, 3.0])
    assert prior.value(x) == pytest.approx(2.0 * (8 + 0.125) + 0.3 * (0.25 + 3.0))
    np.testing.assert_allclose(prior.grad(x), [-24.0, -1.5, 0.3, 0.3, 0.3])
    np.testing.assert_allclose(prior.hess_diag(x), [24.0, 6.0, 0.0, 0.0, 0.0])
    y = rng.standard_normal(1000)
    y = y[np.abs(y) > 1e-3]
    h = 1e-6
    fd = np.array([(prior.value(y + h * e) - prior.value(y - h * e)) / (2 * h) for e in np.eye(len(y))[:20]])
    np.testing.assert_allclose(fd, prior.grad(y)[:20], rtol=1e-4, atol=1e-8)


def test_mirrored_slices_equal_interpolated_ones(rng):
    """Slices derived from antipodal partners equal direct interpolation for a real volume."""
    n, r_max = 20, 4.0
    band, quad = make_band(r_max), make_quadrature(r_max)
    coords = slice_coordinates(quad.base_matrices(), band.k, np.float64)
    m_max = int(np.ceil(2 * r_max)) + 1
    sym, plain = Slicer(coords, m_max), Slicer(coords, m_max, use_symmetry=False)
    assert sym.n_interpolated == quad.n_base // 2            # Lebedev rules are antipodal
    cube = PartialDFT(n, m_max, np.float64).forward(rng.standard_normal((n, n, n)))
    np.testing.assert_allclose(sym.forward(cube), plain.forward(cube), rtol=0, atol=1e-10)
    g = rng.standard_normal(coords.shape[:2]) + 1j * rng.standard_normal(coords.shape[:2])
    # adjoints agree on the Hermitian subspace: compare through a real volume's gradient
    dft = PartialDFT(n, m_max, np.float64)
    np.testing.assert_allclose(dft.adjoint(sym.adjoint(g)), dft.adjoint(plain.adjoint(g)), atol=1e-10)


@pytest.mark.slow
def test_paper_scale_gradient_float32_vs_float64():
    from problems import load_problem
    p = load_problem("synthetic", scale="paper", seed=0)
    x = p.initial_density(0)
    idx = np.arange(100)
    f64, g64 = p.oracle(dtype=np.float64).value_and_grad(x.astype(np.float64), idx)
    f32, g32 = p.oracle().value_and_grad(x, idx)
    assert abs(f32 - f64) < 1e-5 * abs(f64)
    assert np.linalg.norm(g32 - g64) < 1e-3 * np.linalg.norm(g64)
