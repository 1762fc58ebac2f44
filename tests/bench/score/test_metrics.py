"""Alignment and FSC against known answers (bench/score/metrics.py)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bench.score.metrics import (BEYOND_BAND, _rotate, align, apply_alignment, compare_to_truth, fourier_shift, fsc,
                           lowpass, resolution_at)


def _problem(name):
    from problems import load_problem
    return load_problem(name, scale="tiny", seed=0, progress=False)


@pytest.fixture(scope="module")
def realistic_tiny(_isolated_cache):
    return _problem("realistic")


def _moved_copy(truth, rng, mirrored):
    """A rotated (uniform on SO(3)), fractionally shifted and optionally mirrored copy of ``truth``."""
    matrix = Rotation.random(random_state=rng).as_matrix()
    shift = rng.uniform(-3, 3, 3)
    vol = truth[::-1] if mirrored else truth
    return fourier_shift(_rotate(np.asarray(vol, float), matrix), shift)


def _check_recovers(problem, rng, mirrored):
    truth = problem.ground_truth
    moved = _moved_copy(truth, rng, mirrored)
    cmp = compare_to_truth(moved, truth, problem.metadata["pixel_size_angstrom"], problem.band.r_max)
    curve, in_band = np.array(cmp["fsc"]), np.array(cmp["in_band"])
    assert in_band.sum() == int(np.floor(problem.band.r_max))
    assert curve[in_band].min() >= 0.99, (problem.name, mirrored, curve[in_band])
    assert cmp["mirrored"] == mirrored
    assert cmp["resolution_0.5"] == BEYOND_BAND and cmp["resolution_0.143"] == BEYOND_BAND
    return cmp


@pytest.mark.parametrize("mirrored", [False, True])
def test_rotated_shifted_copies_of_synthetic_truth_align(tiny, mirrored):
    _check_recovers(tiny, np.random.default_rng([7, mirrored]), mirrored)


def test_rotated_shifted_mirrored_copy_of_realistic_truth_aligns(realistic_tiny):
    _check_recovers(realistic_tiny, np.random.default_rng(3), True)


@pytest.mark.slow
@pytest.mark.parametrize("case", range(20))
def test_twenty_random_copies_per_problem(tiny, realistic_tiny, case):
    rng = np.random.default_rng([case, 0xF5C])
    for problem in (tiny, realistic_tiny):
        _check_recovers(problem, rng, bool(rng.integers(2)))


def test_alignment_found_is_the_inverse_of_the_motion(tiny):
    """Applying the returned alignment to the moved copy reproduces the truth voxel by voxel (in band)."""
    truth = np.asarray(tiny.ground_truth, float)
    moved = _moved_copy(truth, np.random.default_rng(11), False)
    result = align(moved, truth, tiny.band.r_max)
    again = apply_alignment(moved, result["rotation"], result["mirrored"], result["shift"])
    r = tiny.band.r_max
    err = np.linalg.norm(lowpass(again, r) - lowpass(truth, r)) / np.linalg.norm(lowpass(truth, r))
    assert err < 0.05


def test_random_densities_and_noise_score_below_a_near_optimum(tiny):
    """Discrimination: a near-optimum (truth + 30% in-band noise, the error of a good MAP estimate)
    beats the initial density, an independent random density and white noise; noise stays near 0."""
    rng = np.random.default_rng(5)
    truth = np.asarray(tiny.ground_truth, float)
    px, r = tiny.metadata["pixel_size_angstrom"], tiny.band.r_max
    noise = lowpass(rng.normal(size=truth.shape), r)
    band_truth = lowpass(truth, r)
    near = truth + 0.3 * noise * np.linalg.norm(band_truth) / np.linalg.norm(noise)
    score = {name: compare_to_truth(vol, truth, px, r)["fsc_band_mean"] for name, vol in [
        ("near", _moved_copy(near, rng, True)), ("initial", tiny.initial_density(0)),
        ("other", _problem_free_random(truth.shape[0], rng)), ("noise", rng.normal(size=truth.shape))]}
    assert score["near"] > 0.93
    assert score["near"] > score["initial"] + 0.05 and score["near"] > score["other"] + 0.1
    assert abs(score["noise"]) < 0.35 and score["noise"] < score["other"]


def _problem_free_random(n, rng):
    """An independent random density: a few Gaussian blobs (positive, like a molecule)."""
    z, y, x = np.mgrid[:n, :n, :n] - n / 2
    vol = np.zeros((n, n, n))
    for _ in range(6):
        c = rng.uniform(-n / 5, n / 5, 3)
        vol += np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * (n / 12) ** 2))
    return vol


def test_fsc_and_band_limited_resolution():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16, 16))
    freq, curve = fsc(a, a)
    assert np.allclose(curve, 1) and np.isclose(freq[0], 1 / 16)
    _, curve = fsc(a, rng.normal(size=a.shape))
    assert np.abs(curve).max() < 0.5
    freq = np.arange(1, 8) / 16
    falling = np.array([1.0, 0.9, 0.6, 0.4, 0.2, 0.1, 0.0])
    assert resolution_at(freq, falling, 0.5, 2.0, band_limit=5 / 16) == pytest.approx(2.0 / (3.5 / 16))
    assert resolution_at(freq, falling, 0.143, 2.0, band_limit=4 / 16) == BEYOND_BAND
    assert resolution_at(freq, falling, 0.143, 2.0) == pytest.approx(2.0 / (5 / 16 + 0.057 / 0.1 / 16))
    assert resolution_at(freq, 0.2 + 0 * falling, 0.5, 2.0, band_limit=4 / 16) == float("inf")


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        align(np.zeros((8, 8, 8)), np.zeros((10, 10, 10)), 2)
    vol = np.ones((8, 8, 8))
    vol[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        align(vol, np.ones((8, 8, 8)), 2)


def test_coarse_scores_match_sampled_amplitude_correlation():
    """The one-pass coarse search equals sampling every rotation's amplitudes, centring per shell
    and correlating (the form it replaced), rotation by rotation."""
    from scipy.ndimage import map_coordinates

    from bench.score.coarse import coarse_scores
    from bench.score.metrics import OVERSAMPLING, _BandSampler, _band_points, _shell_means, rotation_grid
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 16, 16, 16))
    radius = 4.5
    k, shells = _band_points(radius)
    n_shells = int(shells.max())
    sampler, ref = _BandSampler(x, 13), _BandSampler(y, 13)
    ref_amp = np.abs(ref(k))
    ref_c = ref_amp - _shell_means(ref_amp, shells, n_shells)
    grid = rotation_grid(0.6)
    rotated = np.einsum("gji,pj->gpi", grid, k)
    amp = map_coordinates(sampler._amp, (rotated * OVERSAMPLING + sampler.centre).reshape(-1, 3).T,
                          order=1, mode="nearest").reshape(rotated.shape[:-1])
    amp_c = amp - _shell_means(amp, shells, n_shells)
    expected = np.mean([(amp_c[:, shells == s] @ ref_c[shells == s])
                        / np.sqrt((amp_c[:, shells == s] ** 2).sum(1) * (ref_c[shells == s] ** 2).sum() + 1e-300)
                        for s in range(1, n_shells + 1)], axis=0)
    got = coarse_scores(sampler._amp, grid, k, shells, n_shells, ref_c, OVERSAMPLING, sampler.centre)
    assert grid.shape[0] > 100 and np.ptp(expected) > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_array_module_coarse_scores_equal_the_numba_pass():
    """The blocked array-module coarse search (issue 21: the device's) gives the numba pass's scores."""
    from bench.score.coarse import coarse_scores, coarse_scores_xp
    from bench.score.metrics import OVERSAMPLING, _BandSampler, _band_points, _shell_means, rotation_grid
    import scipy.ndimage
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 16, 16, 16))
    k, shells = _band_points(4.5)
    n_shells = int(shells.max())
    sampler, ref = _BandSampler(x, 13), _BandSampler(y, 13)
    ref_amp = np.abs(ref(k))
    ref_c = ref_amp - _shell_means(ref_amp, shells, n_shells)
    grid = rotation_grid(0.6)
    want = coarse_scores(sampler._amp, grid, k, shells, n_shells, ref_c, OVERSAMPLING, sampler.centre)
    got = coarse_scores_xp(np, scipy.ndimage, sampler._amp, grid, k, shells, n_shells, ref_c, OVERSAMPLING,
                           sampler.centre, block=7 * k.shape[0] + 3)           # blocks of 7 rotations
    assert np.ptp(want) > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mirrored", [False, True])
def test_array_module_path_aligns_as_the_cpu_path(tiny, mirrored):
    """compare_to_truth on device 'numpy' (the array-module path a GPU runs, here with numpy) finds the
    CPU path's alignment and FSC on a moved copy of the truth."""
    truth = tiny.ground_truth
    moved = _moved_copy(truth, np.random.default_rng(11), mirrored)
    pixel, r_max = tiny.metadata["pixel_size_angstrom"], tiny.band.r_max
    cpu = compare_to_truth(moved, truth, pixel, r_max, device="cpu")
    dev = compare_to_truth(moved, truth, pixel, r_max, device="numpy")
    assert dev["mirrored"] == cpu["mirrored"] == mirrored
    np.testing.assert_allclose(dev["rotation"], cpu["rotation"], atol=2e-3)
    np.testing.assert_allclose(dev["shift"], cpu["shift"], atol=2e-2)
    np.testing.assert_allclose(dev["fsc"], cpu["fsc"], atol=1e-4)
    assert isinstance(dev["aligned"], np.ndarray) and dev["aligned"].dtype == np.float32
    with pytest.raises(ValueError, match="unknown device"):
        compare_to_truth(moved, truth, pixel, r_max, device="tpu")
