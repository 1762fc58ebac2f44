"""Exact Gaussian-mixture simulation (issue 14: data not made by the objective's own model)."""
import numpy as np
import pytest
import scipy.fft
from scipy.spatial.transform import Rotation

from problems.data.gaussians import GaussianMixture
from problems.data.phantoms import synthetic_mixture
from problems.data.simulate import CHUNK, ctf_half_plane, exact_images
from problems.data.units import ctf_from_microscope
from problems.model.ctf import evaluate_ctf
from problems.model.fourier import image_band_coefficients
from problems.model.grids import make_band


def _mixture(rng, n_comp=6, spread=5.0):
    return GaussianMixture(rng.uniform(-spread, spread, (n_comp, 3)), rng.uniform(1.2, 2.5, n_comp),
                           rng.uniform(0.3, 1.0, n_comp))


def _ctf(n_images, rng, apix=4.0):
    return ctf_from_microscope(pixel_size=apix, defocus_u_angstrom=rng.uniform(15000, 25000, n_images),
                               defocus_v_angstrom=rng.uniform(14000, 15000, n_images),
                               astigmatism_angle_deg=rng.uniform(0, 180, n_images), voltage_kv=300,
                               cs_mm=2.7, amplitude_contrast=0.07,
                               bfactor_angstrom2=rng.uniform(50, 150, n_images))


@pytest.mark.parametrize("axes", [(0, "identity"), (1, "x quarter turn")])
def test_exact_slice_equals_dft_of_voxel_projection(axes, rng):
    """The analytic slice has the objective's normalisation: it equals the unitary 2D DFT of the
    plain sum of the voxelised mixture along the beam (here the beam along z, and along y after a
    quarter turn about x, where the projection is a sum over another array axis)."""
    n = 32
    mix = _mixture(rng)
    x = mix.density(n).astype(np.float64)
    if axes[0] == 0:
        rot, proj = np.eye(3), x.sum(0)                              # [y, x]
    else:
        # A = Rx(-90): rows e_x, e_z, -e_y -> image (x, y) = (x, z); beam along -y
        rot, proj = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]), x.sum(1)   # [z, x]
    band = make_band(6.0)
    exact = mix.slices(rot[None], band.k.astype(float), n)[0]
    dft = image_band_coefficients(proj[None], band.k)[0]
    np.testing.assert_allclose(dft, exact, atol=2e-6 * np.abs(exact).max())


def test_image_spectra_are_the_exact_slices_with_shift(rng):
    n, b = 24, 5
    mix = _mixture(rng)
    rot = Rotation.random(b, random_state=1).as_matrix()
    shifts = rng.normal(0, 1.5, (b, 2))
    img = scipy.fft.irfft2(mix.image_spectra(rot, shifts, n), s=(n, n)) * n
    k = make_band(8.0).k
    np.testing.assert_allclose(image_band_coefficients(img, k), mix.slices(rot, k.astype(float), n, shifts),
                               atol=3e-6 * np.abs(mix.masses(n)).sum())
    # and the image is the projection shifted by +t: its centroid moves by the shift
    centroid = lambda im: np.array([(im.sum(0) * (np.arange(n) - n // 2)).sum(),          # noqa: E731
                                    (im.sum(1) * (np.arange(n) - n // 2)).sum()]) / im.sum()
    unshifted = scipy.fft.irfft2(mix.image_spectra(rot, np.zeros((b, 2)), n), s=(n, n)) * n
    np.testing.assert_allclose(centroid(img[0]) - centroid(unshifted[0]), shifts[0], atol=0.02)
    with pytest.raises(ValueError, match="must be even"):       # the half-plane assembly would read past the end
        mix.image_spectra(rot, shifts, n + 1)


def test_fast_ctf_matches_evaluate_ctf(rng):
    n = 32
    ctf = _ctf(4, rng)
    half = ctf_half_plane(ctf, n)
    ky, kx = np.meshgrid(np.fft.fftfreq(n, 1 / n), np.arange(n // 2 + 1), indexing="ij")
    k = np.stack([kx.ravel(), ky.ravel()], 1)
    ref = evaluate_ctf(ctf, k / n).reshape(4, n, n // 2 + 1)
    inside = (kx**2 + ky**2) <= (n / 2 - 1) ** 2
    np.testing.assert_allclose(half[:, inside], ref[:, inside], atol=2e-5)
    assert np.all(half[:, ~inside] == 0)


def test_noise_does_not_depend_on_threads(rng):
    """Each chunk's noise comes from its own spawned generator: 1 or 3 workers, same bytes."""
    n, count = 16, CHUNK + 40
    mix = _mixture(rng, spread=3.0)
    rot = Rotation.random(count, random_state=2).as_matrix()
    ctf = _ctf(count, rng)
    run = lambda w: np.concatenate(list(exact_images(mix, rot, np.zeros((count, 2)), ctf, n, 1.0,  # noqa: E731
                                                     np.random.default_rng(7), workers=w)))
    one, three = run(1), run(3)
    assert one.shape == (count, n, n) and one.dtype == np.float32
    np.testing.assert_array_equal(one, three)
    clean = np.concatenate(list(exact_images(mix, rot, np.zeros((count, 2)), ctf, n, 1.0, None)))
    assert abs(np.std(one - clean) - 1.0) < 0.02


def test_synthetic_mixture_is_non_negative_and_asymmetric():
    n = 24
    x = synthetic_mixture(n).density(n)
    assert x.min() >= 0 and x.max() > 1
    for axis in range(3):                         # no mirror symmetry: the lobes and cap break it
        assert np.abs(x - np.flip(x, axis)).max() > 0.1 * x.max()


def test_tiny_problem_reports_its_truth_diagnostics(tiny):
    truth = tiny.metadata["truth"]
    assert truth["negative_fraction"] == 0.0
    # trilinear on the 2x grid is a few percent off the exact slices, not exact (no inverse crime)
    assert 1e-3 < truth["model_mismatch"] < 0.2
    assert truth["band_snr"] > 0 and truth["test_nll_truth"] < truth["test_nll_zero"]
    assert truth["prior_over_K_truth"] == pytest.approx(tiny.prior.value(tiny.ground_truth) / tiny.n_train,
                                                        rel=1e-3)


def test_truncated_normal_shifts_by_rejection():
    from scipy.stats import kstest

    from problems.data.simulate import random_shifts
    s = random_shifts(np.random.default_rng(3), 4000, 1.0, 1.0)
    r = np.hypot(s[:, 0], s[:, 1])
    assert r.max() <= 1.0 and (r > 0.999).mean() < 0.01         # not piled onto the clipping circle
    # radial CDF of a 2D standard normal truncated to r <= 1: (1 - exp(-r^2/2)) / (1 - exp(-1/2))
    cdf = lambda t: (1 - np.exp(-np.clip(t, 0, 1) ** 2 / 2)) / (1 - np.exp(-0.5))  # noqa: E731
    assert kstest(r, cdf).pvalue > 1e-3
    with pytest.raises(ValueError):
        random_shifts(np.random.default_rng(0), 3, 0.0, 1.0)


def test_stack_header_statistics_match_mrcfile(tmp_path):
    """write_particles accumulates the MRC header statistics chunk by chunk (no re-read of the
    stack); they equal what mrcfile computes from the whole stack."""
    import mrcfile

    from problems.data.io import write_particles
    n = 50
    imgs = np.random.default_rng(0).standard_normal((n, 8, 8)).astype(np.float32) * 3 + 1
    phys = {"voltage_kv": 300, "cs_mm": 2.7, "amplitude_contrast": 0.1, "defocus_u": np.full(n, 1e4),
            "defocus_v": np.full(n, 1e4), "defocus_angle": np.zeros(n), "bfactor": np.zeros(n)}
    write_particles(tmp_path, iter([imgs[:20], imgs[20:]]), n, 8, 2.0, phys, np.zeros((n, 3)), np.zeros((n, 2)))
    with mrcfile.open(tmp_path / "particles.mrcs") as mrc:
        ours = [float(mrc.header[f]) for f in ("dmin", "dmax", "dmean", "rms")]
    with mrcfile.open(tmp_path / "particles.mrcs", mode="r+") as mrc:
        mrc.update_header_stats()
        theirs = [float(mrc.header[f]) for f in ("dmin", "dmax", "dmean", "rms")]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[1] > ours[0] and ours[3] == pytest.approx(3.0, rel=0.1)


def test_phantom_is_drawn_from_the_seed():
    """Each seed has its own ground truth (a secret-seed instance cannot be read off the public code);
    the same seed gives the same bytes, and the documented layout needs no generator."""
    from problems.data.phantoms import synthetic_mixture

    a = synthetic_mixture(24, np.random.default_rng(1)).density(24)
    b = synthetic_mixture(24, np.random.default_rng(1)).density(24)
    c = synthetic_mixture(24, np.random.default_rng(2)).density(24)
    plain = synthetic_mixture(24).density(24)
    np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(a - c) > 0.02 * np.linalg.norm(a)
    assert np.linalg.norm(a - plain) > 0.02 * np.linalg.norm(a)
    assert a.min() >= 0 and c.min() >= 0


def test_blocked_evaluation_does_not_change_the_spectra(rng):
    """image_spectra builds its factors a few images at a time and fourier() its terms a block at a
    time, to bound memory (issue 21): the spectra are the same bytes, the transform the same to
    rounding (BLAS may pick another kernel for another block's row count)."""
    n, b = 20, 7
    mix = _mixture(rng, n_comp=9)
    rot = Rotation.random(b, random_state=3).as_matrix()
    shifts = rng.normal(0, 1.0, (b, 2))
    whole = mix.image_spectra(rot, shifts, n, batch=b)
    for batch in (1, 3):
        np.testing.assert_array_equal(mix.image_spectra(rot, shifts, n, batch=batch), whole)
    q = rng.normal(0, 4.0, (5, 11, 3))
    np.testing.assert_allclose(mix.fourier(q, n, block=2 * mix.size), mix.fourier(q, n), rtol=1e-12)
    assert mix.fourier(q, n, block=1).shape == (5, 11)


def test_stack_written_in_int16_mode_reads_back_rounded(tmp_path):
    """write_particles writes the pixels sequentially after mrcfile's header, in the mode's dtype."""
    import mrcfile

    from problems.data.io import write_particles
    n = 6
    imgs = np.random.default_rng(1).standard_normal((n, 8, 8)).astype(np.float32) * 40
    phys = {"voltage_kv": 300, "cs_mm": 2.7, "amplitude_contrast": 0.1, "defocus_u": np.full(n, 1e4),
            "defocus_v": np.full(n, 1e4), "defocus_angle": np.zeros(n), "bfactor": np.zeros(n)}
    write_particles(tmp_path, iter([imgs[:4], imgs[4:]]), n, 8, 2.0, phys, np.zeros((n, 3)), np.zeros((n, 2)),
                    mrc_mode=1)
    with mrcfile.open(tmp_path / "particles.mrcs", permissive=False) as mrc:
        assert mrc.data.dtype == np.int16 and mrc.data.shape == (n, 8, 8)
        np.testing.assert_array_equal(mrc.data, np.rint(imgs).astype(np.int16))
        assert float(mrc.header.dmax) == np.rint(imgs).max()
    with pytest.raises(RuntimeError, match="more than"):
        write_particles(tmp_path / "x", iter([imgs, imgs]), n, 8, 2.0, phys, np.zeros((n, 3)), np.zeros((n, 2)))
    assert not list((tmp_path / "x").glob("*.mrcs"))          # nothing half-written is left


def test_device_path_images_match_the_cpu_path(rng):
    """exact_images on an array-module device (here numpy: the code a GPU runs) gives the numba
    path's images to float32 rounding, with the same noise streams (issue 21)."""
    n, count = 24, CHUNK + 30
    mix = _mixture(rng, n_comp=30)
    rot = Rotation.random(count, random_state=4).as_matrix()
    shifts = rng.normal(0, 1.5, (count, 2))
    ctf = _ctf(count, rng)
    run = lambda device, noise: np.concatenate(list(exact_images(  # noqa: E731
        mix, rot, shifts, ctf, n, 1.0, noise, device=device)))
    cpu, dev = run("cpu", np.random.default_rng(8)), run("numpy", np.random.default_rng(8))
    clean = run("numpy", None)
    assert dev.dtype == np.float32 and dev.shape == (count, n, n)
    np.testing.assert_allclose(dev, cpu, atol=1e-5 * np.abs(clean).max())
    assert abs(np.std(dev - clean) - 1.0) < 0.02 and np.abs(clean).max() > 1.0
    spec_xp = mix.image_spectra_xp(np, rot[:9], shifts[:9], n, batch=4)
    np.testing.assert_allclose(spec_xp, mix.image_spectra(rot[:9], shifts[:9], n), atol=1e-6 * np.abs(spec_xp).max())
    with pytest.raises(ValueError, match="unknown device"):
        next(exact_images(mix, rot, shifts, ctf, n, 1.0, None, device="tpu"))


def test_realistic_generation_on_a_device_records_it(_isolated_cache, tmp_path, monkeypatch):
    """load_problem(..., device=...) simulates missing realistic data on that device (the family's
    simulates_on_device flag) and the manifest says where; the images match the CPU's."""
    import json

    import mrcfile

    from problems import load_problem
    from problems.catalog.realistic import ensure_realistic, realistic_spec
    from problems.data.atomic_models import model_path
    model_path("6zu5")                                          # fetched into the session cache once
    spec = realistic_spec("tiny", n_train=60, n_test=10)
    cpu = ensure_realistic(spec, 0, progress=False)             # the session cache: CPU data
    monkeypatch.setenv("CRYOOPT_CACHE", str(tmp_path))
    (tmp_path / "models").symlink_to(cpu.parent / "models")
    p = load_problem("realistic", scale="tiny", progress=False, device="numpy", n_train=60, n_test=10)
    dev = tmp_path / cpu.name
    assert json.loads((dev / "manifest.json").read_text())["generated_on"] == "numpy"
    assert json.loads((cpu / "manifest.json").read_text())["generated_on"] == "cpu"
    with mrcfile.open(cpu / "particles.mrcs") as a, mrcfile.open(dev / "particles.mrcs") as b:
        np.testing.assert_allclose(b.data, a.data, atol=1e-4)
    assert p.device == "numpy" and p.n_train == 60
