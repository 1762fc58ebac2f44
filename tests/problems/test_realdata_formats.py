"""Real data as RELION and cryoSPARC write it (issue 15), on small files the tests write.

The ``.cs`` files are written by tests/realformats.py from pyem's conventions
(not the project's), STAR files as RELION writes them (hand-written text for
the project tree).  One test (or group) per item of the issue:

1. ``.cs`` poses/shifts equal the same particles' STAR poses/shifts;
2. optics groups with different voltage/Cs/Q0 -> per-particle CTFs; mixed pixel size refused;
3. every bad value -> one DataError naming file, particle row and field;
4. RELION project layout, ``datadir=``, the stack beside the STAR file, one rule for .cs;
5. an MRC without the ``MAP `` identifier reads with a warning, still validated;
6. a missing pixel size can be supplied (STAR 3.0, .cs, CLI);
7. an optics block without ``rlnOpticsGroup`` in the particles is group 1;
8. ``rlnCtfScalefactor`` and ``rlnCtfBfactor`` as RELION's ``CTF::getCTF`` applies them;
9. ``--problem-arg`` values typed by the loader's signature, unknown keys refused;
10. a noise-free background is refused with the measured sigma;
11. a stack too small for one batch says why nothing ran;
extras: ``.STAR``, single-image names without ``N@``, "not a cryoSPARC .cs file".
"""
import pickle
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from problems import load_problem
from problems.data.cryosparc import read_cryosparc
from problems.data.io import DataError, DataWarning, read_particle_star, read_particles
from problems.model.ctf import evaluate_ctf
from problems.model.grids import make_band
from realformats import star_text, write_cs

TINY = Path(__file__).resolve().parents[1] / "data" / "relion_tiny"


def _tables():
    blocks = starfile.read(TINY / "particles.star", always_dict=True)
    return blocks["optics"].copy(), blocks["particles"].copy()


def _write_star(path: Path, blocks: dict[str, pd.DataFrame]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(star_text(blocks))
    return path


def _stack_copy(folder: Path, name: str = "particles.mrcs") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(TINY / "particles.mrcs", folder / name))


# --------------------------------------------------------------------------- 1. cryoSPARC poses

def test_cs_poses_and_shifts_match_star_written_with_pyem_convention(tmp_path):
    rng = np.random.default_rng(15)
    optics, parts = _tables()
    apix = float(optics["rlnImagePixelSize"][0])
    n = len(parts)
    parts["rlnAngleRot"], parts["rlnAnglePsi"] = rng.uniform(-180, 180, (2, n))
    parts["rlnAngleTilt"] = rng.uniform(0, 180, n)
    parts["rlnOriginXAngst"], parts["rlnOriginYAngst"] = rng.uniform(-3, 3, (2, n)) * apix
    proj = tmp_path / "P1"
    _stack_copy(proj / "J3" / "imported")
    star = _write_star(proj / "J3" / "imported" / "particles.star",
                       {"optics": optics, "particles": parts})
    cs_path = proj / "J12" / "J12_particles.cs"          # blob/path relative to the project dir
    cs_path.parent.mkdir()
    write_cs(cs_path, parts, ">J3/imported/particles.mrcs", 24, apix, optics.iloc[0])
    s, c = read_particle_star(star), read_particles(cs_path)
    # generic rotations: reading the .cs pose untransposed would be off by up to 2 per entry
    assert np.abs(s.rotations - s.rotations.transpose(0, 2, 1)).max() > 1.0
    np.testing.assert_allclose(c.rotations, s.rotations, atol=2e-6)
    np.testing.assert_allclose(s.shifts, -parts[["rlnOriginXAngst", "rlnOriginYAngst"]] / apix,
                               atol=1e-5)
    np.testing.assert_allclose(c.shifts, s.shifts, atol=1e-5)
    np.testing.assert_allclose(evaluate_ctf(c.ctf, make_band(5.0).k / 24),
                               evaluate_ctf(s.ctf, make_band(5.0).k / 24), atol=2e-6)
    np.testing.assert_array_equal(next(c.iter_chunks(50))[1], next(s.iter_chunks(50))[1])


# --------------------------------------------------------------------------- 2. optics groups

def test_mixed_optics_groups_give_per_particle_ctfs(tmp_path):
    optics, parts = _tables()
    g2 = optics.copy()
    g2["rlnOpticsGroup"], g2["rlnOpticsGroupName"] = 2, "opticsGroup2"
    g2["rlnVoltage"], g2["rlnSphericalAberration"], g2["rlnAmplitudeContrast"] = 200.0, 0.01, 0.1
    both = pd.concat([optics, g2], ignore_index=True)
    mixed = parts.copy()
    mixed["rlnOpticsGroup"] = 1 + np.arange(len(parts)) % 2
    _stack_copy(tmp_path)
    m = read_particle_star(_write_star(tmp_path / "mixed.star", {"optics": both, "particles": mixed}))
    all2 = parts.copy()
    all2["rlnOpticsGroup"] = 2
    only2 = read_particle_star(_write_star(tmp_path / "g2.star", {"optics": g2, "particles": all2}))
    only1 = read_particle_star(_write_star(tmp_path / "g1.star", {"optics": optics, "particles": parts}))
    k = make_band(8.0).k / 24
    cm, c1, c2 = evaluate_ctf(m.ctf, k), evaluate_ctf(only1.ctf, k), evaluate_ctf(only2.ctf, k)
    odd = np.arange(len(parts)) % 2 == 1
    np.testing.assert_allclose(cm[odd], c2[odd], atol=1e-12)
    np.testing.assert_allclose(cm[~odd], c1[~odd], atol=1e-12)
    assert np.abs(c1[odd] - c2[odd]).max() > 0.1       # group 1's optics would be wrong here
    np.testing.assert_allclose(m.ctf.subset(np.flatnonzero(odd)).wavelength, only2.ctf.wavelength)
    # a mixed pixel size is refused, naming the particle and the field
    both.loc[1, "rlnImagePixelSize"] = 12.0
    with pytest.raises(DataError, match=r"mixed2\.star: particle 2: rlnImagePixelSize 12"):
        read_particle_star(_write_star(tmp_path / "mixed2.star", {"optics": both, "particles": mixed}))


def test_cs_mixed_voltage_per_particle_and_mixed_pixel_size_refused(tmp_path):
    optics, parts = _tables()
    _stack_copy(tmp_path / "stack")
    path = tmp_path / "mixed.cs"
    write_cs(path, parts, "stack/particles.mrcs", 24, float(optics["rlnImagePixelSize"][0]),
             optics.iloc[0])
    cs = np.load(path)
    cs["ctf/accel_kv"][1::2] = 200.0
    np.save(open(path, "wb"), cs)
    ctf = read_cryosparc(path).ctf
    assert np.ndim(ctf.wavelength) == 1
    assert ctf.wavelength[1] / ctf.wavelength[0] == pytest.approx(0.025079 / 0.019687, rel=1e-4)
    cs["blob/psize_A"][4] = 1.0
    np.save(open(path, "wb"), cs)
    with pytest.raises(DataError, match=r"mixed\.cs: particle 5: blob/psize_A 1 differs"):
        read_cryosparc(path)


# --------------------------------------------------------------------------- 3. bad values

@pytest.mark.parametrize("block, row, column, value, words", [
    ("optics", 0, "rlnImagePixelSize", -14.9, ["particle 1", "rlnImagePixelSize", "> 0"]),
    ("optics", 0, "rlnImagePixelSize", 0.0, ["particle 1", "rlnImagePixelSize", "> 0"]),
    ("particles", 6, "rlnDefocusU", "abc", ["particle 7", "rlnDefocusU", "'abc'"]),
    ("particles", 2, "rlnAngleTilt", "nan", ["particle 3", "rlnAngleTilt"]),
    ("optics", 0, "rlnAmplitudeContrast", 1.5, ["particle 1", "rlnAmplitudeContrast", "[0, 1]"]),
    ("optics", 0, "rlnVoltage", "kV", ["rlnVoltage", "'kV'"]),
    ("particles", 9, "rlnOriginXAngst", "inf", ["particle 10", "rlnOriginXAngst"]),
])
def test_bad_value_names_file_row_and_field(tmp_path, block, row, column, value, words):
    blocks = dict(zip(("optics", "particles"), _tables()))
    blocks[block][column] = blocks[block][column].astype(object)
    blocks[block].loc[row, column] = value
    _stack_copy(tmp_path)
    star = _write_star(tmp_path / "bad.star", blocks)
    with pytest.raises(DataError) as info:
        load_problem("star", path=str(star), scale="tiny", progress=False)
    message = str(info.value)
    for word in ["bad.star", *words]:
        assert word in message, (word, message)
    assert "defocus_u" not in message


def test_bad_cs_values_name_row_and_field(tmp_path):
    optics, parts = _tables()
    _stack_copy(tmp_path / "stack")
    path = tmp_path / "bad.cs"
    write_cs(path, parts, "stack/particles.mrcs", 24, 14.933333, optics.iloc[0])
    cs = np.load(path)
    cs["ctf/df1_A"][4] = np.nan
    np.save(open(path, "wb"), cs)
    with pytest.raises(DataError, match=r"bad\.cs: particle 5: ctf/df1_A"):
        read_cryosparc(path)
    cs["ctf/df1_A"][4] = 1e4
    cs["blob/psize_A"] = -1.0
    np.save(open(path, "wb"), cs)
    with pytest.raises(DataError, match=r"bad\.cs: particle 1: blob/psize_A .* > 0 \(220 particles"):
        read_cryosparc(path)


# --------------------------------------------------------------------------- 4. project layouts

def test_relion_project_tree_datadir_and_beside(tmp_path, monkeypatch):
    optics, parts = _tables()
    proj = tmp_path / "project"
    _stack_copy(proj / "Extract" / "job007" / "Movies")
    parts["rlnImageName"] = [f"{i + 1:06d}@Extract/job007/Movies/particles.mrcs" for i in range(len(parts))]
    star = _write_star(proj / "Refine3D" / "job012" / "run_data.star",
                       {"optics": optics, "particles": parts})
    monkeypatch.chdir(tmp_path)                          # not the project directory
    reference = next(read_particle_star(TINY / "particles.star").iter_chunks(220))[1]
    stack = read_particles(star)
    assert stack._files[0] == (proj / "Extract/job007/Movies/particles.mrcs").resolve()
    np.testing.assert_array_equal(next(stack.iter_chunks(220))[1], reference)
    # datadir= wins, and finds the file by its base name when the path does not exist there
    elsewhere = tmp_path / "copied"
    _stack_copy(elsewhere)
    moved = parts.copy()
    moved["rlnImageName"] = [f"{i + 1}@/gone/scratch/particles.mrcs" for i in range(len(parts))]
    lone = _write_star(tmp_path / "lone" / "data.star", {"optics": optics, "particles": moved})
    with pytest.raises(DataError, match="particles.mrcs: image stack not found.*rlnImageName"):
        read_particles(lone)
    assert read_particles(lone, datadir=elsewhere)._files[0] == (elsewhere / "particles.mrcs").resolve()
    p = load_problem("star", path=str(lone), scale="tiny", progress=False, datadir=str(elsewhere))
    assert p.n_train == 200
    # cryodrgn's fallback: the stack beside the STAR file
    _stack_copy(tmp_path / "lone")
    np.testing.assert_array_equal(next(read_particles(lone).iter_chunks(220))[1], reference)
    # the .cs reader uses the same rule (project-relative blob/path, then datadir)
    cs_path = proj / "J20" / "particles.cs"
    cs_path.parent.mkdir()
    write_cs(cs_path, parts, "Extract/job007/Movies/particles.mrcs", 24, 14.933333, optics.iloc[0])
    assert read_particles(cs_path)._files[0] == stack._files[0]
    write_cs(cs_path, parts, "J9/extract/particles.mrcs", 24, 14.933333, optics.iloc[0])
    assert read_particles(cs_path, datadir=elsewhere)._files[0] == (elsewhere / "particles.mrcs").resolve()


# --------------------------------------------------------------------------- 5. MRC without MAP

def test_mrc_without_map_identifier_reads_with_a_warning(tmp_path):
    shutil.copytree(TINY, tmp_path / "s")
    path = tmp_path / "s" / "particles.mrcs"
    raw = bytearray(path.read_bytes())
    assert raw[208:212] == b"MAP "
    raw[208:212] = b"\0\0\0\0"                            # as older tools write it
    path.write_bytes(bytes(raw))
    with pytest.warns(DataWarning, match="Map ID"):
        stack = read_particle_star(tmp_path / "s" / "particles.star")
    reference = next(read_particle_star(TINY / "particles.star").iter_chunks(220))[1]
    np.testing.assert_array_equal(next(stack.iter_chunks(220))[1], reference)
    path.write_bytes(bytes(raw[:50_000]))                 # size is still checked
    with pytest.raises(DataError, match="truncated"), pytest.warns(DataWarning):
        read_particle_star(tmp_path / "s" / "particles.star")


# --------------------------------------------------------------------------- 6. pixel size

def _relion30_without_pixel_size(folder: Path) -> tuple[Path, float]:
    optics, parts = _tables()
    apix = float(optics["rlnImagePixelSize"][0])
    flat = parts.drop(columns=["rlnOpticsGroup"])
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        flat[col] = optics[col][0]
    flat["rlnOriginX"] = flat.pop("rlnOriginXAngst") / apix
    flat["rlnOriginY"] = flat.pop("rlnOriginYAngst") / apix
    _stack_copy(folder)
    return _write_star(folder / "old.star", {"images": flat}), apix


def test_missing_pixel_size_can_be_supplied(tmp_path, capsys):
    star, apix = _relion30_without_pixel_size(tmp_path / "s")
    with pytest.raises(DataError, match="old.star: no pixel size.*pixel_size="):
        load_problem("star", path=str(star), scale="tiny", progress=False)
    p = load_problem("star", path=str(star), scale="tiny", progress=False, pixel_size=apix)
    assert p.metadata["source_pixel_size_angstrom"] == pytest.approx(apix)
    with pytest.raises(DataError, match="rlnImagePixelSize says 14.9333 Å but pixel_size=7"):
        read_particles(TINY / "particles.star", pixel_size=7.0)
    optics, parts = _tables()
    path = tmp_path / "nopsize.cs"
    write_cs(path, parts, "s/particles.mrcs", 24, apix, optics.iloc[0])
    cs = np.load(path)
    np.save(open(path, "wb"), cs[[n for n in cs.dtype.names if n != "blob/psize_A"]])
    with pytest.raises(DataError, match="blob/psize_A; pass pixel_size="):
        read_particles(path)
    assert read_particles(path, pixel_size=apix).pixel_size == apix
    from bench.cli import main
    rc = main(["run", "--problem", "star", "--path", str(star), "--scale", "tiny", "--optimizer", "sgd",
               "--budget", "100", "--set", "batch_size=50", "--problem-arg", f"pixel_size={apix}",
               "--results", str(tmp_path / "results")])
    assert rc == 0 and "finished" in capsys.readouterr().out


# --------------------------------------------------------------------------- 7. optics, no group column

def test_optics_block_applies_without_group_column(tmp_path):
    optics, parts = _tables()
    _stack_copy(tmp_path)
    star = _write_star(tmp_path / "nogroup.star",
                       {"optics": optics, "particles": parts.drop(columns=["rlnOpticsGroup"])})
    a, b = read_particle_star(star), read_particle_star(TINY / "particles.star")
    assert a.pixel_size == b.pixel_size and a.box_size == 24
    np.testing.assert_allclose(evaluate_ctf(a.ctf, make_band(6.0).k / 24),
                               evaluate_ctf(b.ctf, make_band(6.0).k / 24), atol=1e-12)
    parts["rlnOpticsGroup"] = 3
    with pytest.raises(DataError, match="particle 1: rlnOpticsGroup 3 is not in data_optics"):
        read_particle_star(_write_star(tmp_path / "g3.star", {"optics": optics, "particles": parts}))


# --------------------------------------------------------------------------- 8. scale, B-factor

def test_ctf_scalefactor_and_bfactor_as_relion_applies_them(tmp_path):
    optics, parts = _tables()
    apix = float(optics["rlnImagePixelSize"][0])
    parts["rlnCtfBfactor"] = 0.0
    _stack_copy(tmp_path)
    plain = read_particle_star(_write_star(tmp_path / "plain.star", {"optics": optics, "particles": parts}))
    scale = np.where(np.arange(len(parts)) % 2, 0.5, 1.0)
    parts["rlnCtfScalefactor"], parts["rlnCtfBfactor"] = scale, 400.0
    damped = read_particle_star(_write_star(tmp_path / "sb.star", {"optics": optics, "particles": parts}))
    k_px = make_band(10.0).k / 24                          # cycles/pixel
    k_inv_angstrom = np.hypot(*k_px.T) / apix
    # RELION ctf.h: CTF *= scale, and *= exp(K4 u^2) with K4 = -Bfac / 4, u in 1/Å
    expected = scale[:, None] * np.exp(-400.0 * k_inv_angstrom[None, :] ** 2 / 4)
    np.testing.assert_allclose(evaluate_ctf(damped.ctf, k_px), evaluate_ctf(plain.ctf, k_px) * expected,
                               atol=1e-12)


# --------------------------------------------------------------------------- 9. --problem-arg

def test_problem_args_typed_by_the_loader_signature():
    from bench.commands.run_cmd import problem_kwargs
    got = problem_kwargs("star", ["normalise=False", "box=16", "r_max=0.3", "pixel_size=1.5",
                                  "n_images=none", "datadir=/data/p"])
    assert got == {"normalise": False, "box": 16, "r_max": 0.3, "pixel_size": 1.5,
                   "n_images": None, "datadir": "/data/p"}
    assert type(got["normalise"]) is bool and type(got["box"]) is int
    assert problem_kwargs("star", ["normalise=true"])["normalise"] is True
    with pytest.raises(ValueError, match="nromalise: unknown key.*normalise"):
        problem_kwargs("star", ["nromalise=false"])
    with pytest.raises(ValueError, match="expected true or false"):
        problem_kwargs("star", ["normalise=maybe"])
    with pytest.raises(ValueError, match="expected an integer"):
        problem_kwargs("star", ["box=1.5"])
    with pytest.raises(ValueError, match="--seed"):
        problem_kwargs("star", ["seed=3"])


# --------------------------------------------------------------------------- 10. noise-free

def _blob_stack(folder: Path, noise: float, rng) -> Path:
    n, m = 24, 60
    c = np.arange(n) - n // 2
    images = np.empty((m, n, n), np.float32)
    for i in range(m):
        x0, y0 = rng.uniform(-3, 3, 2)
        images[i] = 5.0 + np.exp(-((c[None, :] - x0) ** 2 + (c[:, None] - y0) ** 2) / (2 * 2.5**2))
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(folder / "blobs.mrcs", overwrite=True) as mrc:
        mrc.set_data(images)
        mrc.set_image_stack()
    optics, parts = _tables()
    parts = parts.iloc[:m].copy()
    parts["rlnImageName"] = [f"{i + 1}@blobs.mrcs" for i in range(m)]
    return _write_star(folder / "blobs.star", {"optics": optics, "particles": parts})


def test_noise_free_background_is_refused_with_its_sigma(tmp_path):
    rng = np.random.default_rng(10)
    clean = _blob_stack(tmp_path / "clean", 0.0, rng)
    with pytest.raises(DataError, match=r"blobs\.star: the image background looks noise-free: its sigma"):
        load_problem("star", path=str(clean), scale="tiny", n_test=10, progress=False)
    p = load_problem("star", path=str(clean), scale="tiny", n_test=10, progress=False, normalise=False)
    assert p.n_train == 50
    noisy = _blob_stack(tmp_path / "noisy", 1.0, rng)      # the same blobs with unit noise pass
    assert load_problem("star", path=str(noisy), scale="tiny", n_test=10, progress=False).n_train == 50


# --------------------------------------------------------------------------- 11. too small

def test_stack_too_small_for_one_batch_says_why(tmp_path):
    import json

    from bench.run.runner import run
    p = load_problem("star", path=str(TINY / "particles.star"), scale="tiny", n_images=40, n_test=10,
                     progress=False)
    result = run(p, "sgd", {"batch_size": 100}, budget="1epoch", results_dir=tmp_path, progress=False)
    meta = json.loads(result.meta_path.read_text())
    assert result.status == "error" and meta["evals"] == 0
    assert "nothing ran" in meta["message"] and "30 training images" in meta["message"]


# --------------------------------------------------------------------------- extras

def test_upper_case_suffix_single_image_names_and_not_a_cs_file(tmp_path):
    shutil.copytree(TINY, tmp_path / "s")
    upper = tmp_path / "s" / "PARTICLES.STAR"
    shutil.copy(TINY / "particles.star", upper)
    assert len(read_particles(upper)) == 220
    images = mrcfile.read(TINY / "particles.mrcs")[:3]
    optics, parts = _tables()
    parts = parts.iloc[:3].copy()
    for i in range(3):
        with mrcfile.new(tmp_path / "s" / f"img{i}.mrc", overwrite=True) as mrc:
            mrc.set_data(images[i])
    parts["rlnImageName"] = [f"img{i}.mrc" for i in range(3)]
    single = read_particles(_write_star(tmp_path / "s" / "single.star", {"optics": optics, "particles": parts}))
    np.testing.assert_array_equal(next(single.iter_chunks(3))[1], images)
    fake = tmp_path / "fake.cs"
    fake.write_bytes(pickle.dumps({"not": "an array"}))
    with pytest.raises(DataError) as info:
        read_particles(fake)
    assert "not a cryoSPARC .cs file" in str(info.value) and "pickle" not in str(info.value)


# --------------------------------------------------------------------------- 2 and 8, against RELION

@pytest.mark.skipif(shutil.which("relion_project") is None, reason="RELION not installed")
def test_relion_project_agrees_on_mixed_optics_scale_and_bfactor(tmp_path):
    """relion_project --ctf on a STAR with two optics groups (300 kV, Cs 2.7 / 200 kV, Cs 0.01),
    rlnCtfScalefactor and rlnCtfBfactor: our reading of the same file gives the same images."""
    import subprocess

    from problems.data.io import write_mrc
    from problems.data.simulate import clean_images
    from problems.model.fourier import oversampled_spectrum
    import importlib.util
    # tests/bench/experiments/test_relion.py is no package module (its folder is not on sys.path
    # unless pytest collected it): load its helpers by path
    spec = importlib.util.spec_from_file_location(
        "_relion_helpers", Path(__file__).parents[1] / "bench" / "experiments" / "test_relion.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    _band_correlation, _blobs = helpers._band_correlation, helpers._blobs

    rng = np.random.default_rng(1515)
    n, apix, m = 64, 3.0, 8
    vol = _blobs(n, rng)
    write_mrc(tmp_path / "map.mrc", vol, apix)
    with mrcfile.new(tmp_path / "dummy.mrcs", overwrite=True) as mrc:
        mrc.set_data(np.zeros((m, n, n), np.float32))
        mrc.set_image_stack()
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnOpticsGroupName": ["g1", "g2"],
                           "rlnImagePixelSize": [apix, apix], "rlnImageSize": [n, n],
                           "rlnImageDimensionality": [2, 2], "rlnVoltage": [300.0, 200.0],
                           "rlnSphericalAberration": [2.7, 0.01], "rlnAmplitudeContrast": [0.1, 0.07]})
    du = rng.uniform(8000, 15000, m)
    scale = np.where(np.arange(m) % 3 == 0, 0.5, 1.0)
    parts = pd.DataFrame({
        "rlnImageName": [f"{i + 1}@dummy.mrcs" for i in range(m)],
        "rlnOpticsGroup": 1 + np.arange(m) % 2, "rlnDefocusU": du,
        "rlnDefocusV": du - rng.uniform(0, 1500, m), "rlnDefocusAngle": rng.uniform(0, 180, m),
        "rlnCtfBfactor": rng.uniform(0, 60, m), "rlnCtfScalefactor": scale,
        "rlnAngleRot": rng.uniform(-180, 180, m), "rlnAngleTilt": rng.uniform(0, 180, m),
        "rlnAnglePsi": rng.uniform(-180, 180, m),
        "rlnOriginXAngst": rng.uniform(-6, 6, m), "rlnOriginYAngst": rng.uniform(-6, 6, m)})
    star = _write_star(tmp_path / "in.star", {"optics": optics, "particles": parts})
    proc = subprocess.run(["relion_project", "--i", str(tmp_path / "map.mrc"), "--o",
                           str(tmp_path / "proj"), "--ang", str(star), "--ctf"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    relion = mrcfile.read(tmp_path / "proj.mrcs").astype(np.float64)
    stack = read_particle_star(star)
    spectrum = oversampled_spectrum(vol)
    ours = next(clean_images(spectrum, stack.rotations, stack.shifts, stack.ctf)).astype(np.float64)
    right = _band_correlation(relion, ours, 0.8 * n / 2)
    assert right.min() > 0.99
    gain = np.sqrt((relion ** 2).sum(axis=(1, 2)) / (ours ** 2).sum(axis=(1, 2)))
    assert gain.max() / gain.min() < 1.03          # the 0.5 scale factor is applied by both
    # reading every particle with group 1's optics (the old behaviour) disagrees with RELION
    single = stack.ctf.__class__(**{**stack.ctf.__dict__, "wavelength": stack.ctf.wavelength[0],
                                    "spherical_aberration": stack.ctf.spherical_aberration[0],
                                    "amplitude_contrast": stack.ctf.amplitude_contrast[0], "scale": 1.0})
    wrong = next(clean_images(spectrum, stack.rotations, stack.shifts, single)).astype(np.float64)
    off = _band_correlation(relion, wrong, 0.8 * n / 2)
    # measured: 1 - corr ~ 2.5e-4 right, ~1.1e-2 for the 200 kV particles read with 300 kV optics
    assert (1 - off[1::2]).min() > 10 * (1 - right).max()
