"""Real data, second round (issue 24): no silent wrong reads.

Every file here is written the way its producer writes it: STAR text as
RELION 3.1 writes it (``realformats.star_text``), ``.cs`` files as numpy
structured arrays with cryoSPARC's field names (``realformats.write_cs``),
MRC stacks by ``mrcfile`` (``compression="gzip"`` / ``"bzip2"`` included).
One test (or group) per item of the issue; each failed on the code before
the change (checked against main at 3ea2477):

1. a name without ``N@`` only for a file of one 2D image; 3D particles refused;
2. duplicate particles dropped with a count, never split across train / test / scoring;
3. CTF-premultiplied images refused;
4. MRC size against header, complex modes, gzip / bzip2 stacks;
5. cryoSPARC shifts in ``alignments3D/psize_A`` pixels; wrong pose shapes refused;
6. unmodelled aberrations and incomplete poses warn, once per file;
7. unnamed / key-value optics, a key-value particle, CR-only line endings;
8. smaller: no --path, constant background, object fields, repeated reasons,
   where the MAP-identifier warning points.
"""
import gzip
import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from problems import load_problem
from problems.data.io import DataError, DataWarning, read_particle_star, read_particles
from problems.model.ctf import evaluate_ctf
from problems.model.grids import make_band
from realformats import cryodrgn_star_text, star_text, write_cs

TINY = Path(__file__).resolve().parents[1] / "data" / "relion_tiny"
K = make_band(6.0).k / 24


def _tables():
    blocks = starfile.read(TINY / "particles.star", always_dict=True)
    return blocks["optics"].copy(), blocks["particles"].copy()


def _star(path: Path, blocks: dict, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fh.write(star_text(blocks, newline))
    return path


def _images() -> np.ndarray:
    """The committed stack's images (int16 there), as float32: mode 2, as RELION writes stacks."""
    return mrcfile.read(TINY / "particles.mrcs").astype(np.float32)


def _stack(folder: Path, data=None, name: str = "particles.mrcs", **new) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(folder / name, overwrite=True, **new) as mrc:
        mrc.set_data(_images() if data is None else data)
        mrc.set_image_stack()
    return folder / name


def _reference():
    return read_particle_star(TINY / "particles.star")


def _no_data_warnings():
    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.simplefilter("error", DataWarning)
    return catcher


# --------------------------------------------------------------------------- 1. names without N@

def test_name_without_index_needs_a_single_image_and_3d_is_refused(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    parts["rlnImageName"] = "particles.mrcs"          # RELION: the whole file, one image
    star = _star(tmp_path / "whole.star", {"optics": optics, "particles": parts})
    with pytest.raises(DataError, match=r"whole\.star: particle 1: rlnImageName names particles\.mrcs "
                                        r"without N@.*holds 220 images"):
        read_particle_star(star)
    # a subtomogram as RELION 4 writes it: a 3D MRC, named alone, rlnImageDimensionality 3
    vol = np.random.default_rng(1).standard_normal((24, 24, 24)).astype(np.float32)
    with mrcfile.new(tmp_path / "sub_subtomo.mrc", overwrite=True) as mrc:
        mrc.set_data(vol)
    sub_optics = optics.copy()
    sub_optics["rlnImageDimensionality"] = 3
    sub = parts.iloc[:1].copy()
    sub["rlnImageName"] = "sub_subtomo.mrc"
    with pytest.raises(DataError, match=r"sub\.star: particle 1: rlnImageDimensionality = 3.*2D"):
        read_particle_star(_star(tmp_path / "sub.star", {"optics": sub_optics, "particles": sub}))
    # without the column, the volume is still not read as its first z-slice
    with pytest.raises(DataError, match=r"sub_subtomo\.mrc without N@.*holds 24 images or sections"):
        read_particle_star(_star(tmp_path / "sub2.star", {"optics": optics, "particles": sub}))


# --------------------------------------------------------------------------- 2. duplicates

def test_duplicate_particles_are_dropped_and_never_split_across_train_and_test(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    # symmetry expansion (C2) as relion_particle_symmetry_expand writes it: each image twice,
    # the copy rotated by 180 degrees about z
    copy = parts.copy()
    copy["rlnAngleRot"] = copy["rlnAngleRot"] + 180.0
    expanded = pd.concat([parts, copy]).sort_index(kind="stable").reset_index(drop=True)
    star = _star(tmp_path / "expanded.star", {"optics": optics, "particles": expanded})
    with pytest.warns(DataWarning, match=r"expanded\.star: 220 of 440 particles repeat.*particle 2 "
                                         r"is particle 1's image 1 of particles\.mrcs"):
        stack = read_particles(star)
    assert len(stack) == 220
    np.testing.assert_array_equal(next(stack.iter_chunks(220))[1], _images())
    np.testing.assert_allclose(stack.rotations, _reference().rotations)   # the first of each kept
    with pytest.warns(DataWarning, match="repeat"):
        p = load_problem("star", path=str(star), scale="tiny", n_score=30, progress=False)
    splits = {"train": p._train[0], "test": p._test[0], "score": p._score[0]}
    assert [len(v) for v in splits.values()] == [170, 20, 30]
    # no held-out image (test or scoring split) has a copy in another split
    for a, b in (("test", "train"), ("score", "train"), ("test", "score")):
        distance = np.abs(splits[a][:, None, :] - splits[b][None, :, :]).max(axis=2)
        assert distance.min() > 1e-3, (a, b)
    # the same in a .cs file: blob/idx repeated
    cs = write_cs(tmp_path / "dup.cs", expanded, "particles.mrcs", 24, 14.933333, optics.iloc[0])
    cs["blob/idx"] = np.arange(len(cs)) // 2
    np.save(open(tmp_path / "dup.cs", "wb"), cs)
    with pytest.warns(DataWarning, match=r"dup\.cs: 220 of 440 particles repeat"):
        assert len(read_particles(tmp_path / "dup.cs")) == 220


# --------------------------------------------------------------------------- 3. premultiplied

def test_ctf_premultiplied_images_are_refused(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    optics["rlnCtfDataAreCtfPremultiplied"] = 1
    with pytest.raises(DataError, match=r"pre\.star: particle 1: rlnCtfDataAreCtfPremultiplied = 1"
                                        r".*raw images"):
        read_particle_star(_star(tmp_path / "pre.star", {"optics": optics, "particles": parts}))
    optics["rlnCtfDataAreCtfPremultiplied"] = 0       # RELION writes 0 for raw images: read
    assert len(read_particle_star(_star(tmp_path / "raw.star", {"optics": optics, "particles": parts}))) == 220


# --------------------------------------------------------------------------- 4. MRC against header

def test_mrc_size_must_match_header_and_complex_modes_are_refused(tmp_path):
    shutil.copy(TINY / "particles.star", tmp_path / "particles.star")
    path = _stack(tmp_path)
    with open(path, "ab") as fh:                         # one image appended, nz not updated
        fh.write(np.zeros((24, 24), np.float32).tobytes())
    with pytest.raises(DataError, match=r"particles\.mrcs: the file has 510208 bytes, 2304 more than "
                                        r"its header describes.*mode 2.*named by rlnImageName of "
                                        r"particle 1 in .*particles\.star"):
        read_particle_star(tmp_path / "particles.star")
    raw = bytearray(_stack(tmp_path).read_bytes())       # float32 data, header saying int16
    raw[12:16] = (1).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"253440 more than its header describes.*mode 1 \(int16\)"):
        read_particle_star(tmp_path / "particles.star")
    _stack(tmp_path, _images().astype(np.complex64))
    with pytest.raises(DataError, match=r"particles\.mrcs: MRC mode 4 \(complex pixels"):
        read_particle_star(tmp_path / "particles.star")
    with mrcfile.new(path, overwrite=True) as mrc:       # an extended header is not extra bytes
        mrc.set_data(_images())
        mrc.set_image_stack()
        mrc.set_extended_header(np.zeros(100, dtype=[("x", "<i4")]))
    assert mrcfile.open(path, header_only=True).header.nsymbt == 400
    np.testing.assert_array_equal(next(read_particle_star(tmp_path / "particles.star").iter_chunks(220))[1],
                                  _images())


@pytest.mark.parametrize("compression", ["gzip", "bzip2"])
def test_compressed_stacks_are_read_through_their_decompression(tmp_path, compression):
    shutil.copy(TINY / "particles.star", tmp_path / "particles.star")
    path = _stack(tmp_path, compression=compression)
    assert path.read_bytes()[:2] in (b"\x1f\x8b", b"BZ")
    stack = read_particle_star(tmp_path / "particles.star")
    chunks = [images for _, images in stack.iter_chunks(64)]
    np.testing.assert_array_equal(np.concatenate(chunks), _images())
    p = load_problem("star", path=str(tmp_path / "particles.star"), scale="tiny", progress=False)
    q = load_problem("star", path=str(TINY / "particles.star"), scale="tiny", progress=False)
    np.testing.assert_array_equal(p._train[0], q._train[0])


def test_cut_or_overlong_gzip_stack_is_refused_when_read(tmp_path):
    shutil.copy(TINY / "particles.star", tmp_path / "particles.star")
    path = _stack(tmp_path, compression="gzip")
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(DataError, match=r"particles\.mrcs: gzip stream is truncated or corrupt.*"
                                        r"named by rlnImageName of particle \d+ in"):
        load_problem("star", path=str(tmp_path / "particles.star"), scale="tiny", progress=False)
    with mrcfile.open(_stack(tmp_path)) as mrc:
        body = (mrc.header.tobytes() + mrc.data.tobytes()
                + np.zeros((24, 24), np.float32).tobytes())
    path.write_bytes(gzip.compress(body))
    with pytest.raises(DataError, match=r"gzip-decompressed it has 510208 bytes, 2304 more"):
        load_problem("star", path=str(tmp_path / "particles.star"), scale="tiny", progress=False)


# --------------------------------------------------------------------------- 5. cryoSPARC

def test_cs_shifts_in_alignment_pixels_are_rescaled_and_bad_pose_shapes_refused(tmp_path):
    optics, parts = _tables()
    apix = float(optics["rlnImagePixelSize"][0])
    rng = np.random.default_rng(24)
    parts["rlnOriginXAngst"], parts["rlnOriginYAngst"] = rng.uniform(-2, 2, (2, len(parts))) * apix
    _stack(tmp_path)
    star = read_particle_star(_star(tmp_path / "p.star", {"optics": optics, "particles": parts}))
    # refined at twice the pixel size (a binned stack), then re-extracted at full size: cryoSPARC
    # keeps alignments3D/shift in the refinement's pixels, alignments3D/psize_A
    path = tmp_path / "J30_particles.cs"
    cs = write_cs(path, parts, "particles.mrcs", 24, apix, optics.iloc[0],
                  extra=[("alignments3D/psize_A", "<f4")])
    cs["alignments3D/psize_A"] = 2 * apix
    cs["alignments3D/shift"] /= 2
    np.save(open(path, "wb"), cs)
    got = read_particles(path)
    np.testing.assert_allclose(got.shifts, star.shifts, atol=1e-5)
    assert np.abs(star.shifts).max() > 1.0              # unscaled would be off by up to 1 px
    # a quaternion where the rotation vector belongs
    quat = np.zeros(len(parts), dtype=[("alignments3D/pose", "<f4", (4,)) if d[0] == "alignments3D/pose"
                                       else d for d in cs.dtype.descr])
    for name in cs.dtype.names:
        if name != "alignments3D/pose":
            quat[name] = cs[name]
    quat["alignments3D/pose"][:, 0] = 1.0
    np.save(open(path, "wb"), quat)
    with pytest.raises(DataError, match=r"J30_particles\.cs: field alignments3D/pose has shape \(4,\) "
                                        r"per particle.*rotation vector \(3 components\)"):
        read_particles(path)


# --------------------------------------------------------------------------- 6. said, not dropped

def test_unmodelled_aberrations_warn_once_per_file_naming_the_fields(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    neutral = optics.assign(rlnBeamTiltX=0.0, rlnBeamTiltY=0.0, rlnMagMat00=1.0, rlnMagMat01=0.0,
                            rlnMagMat10=0.0, rlnMagMat11=1.0)
    catcher = _no_data_warnings()                        # zero tilt, identity matrix: nothing to say
    try:
        read_particle_star(_star(tmp_path / "neutral.star", {"optics": neutral, "particles": parts}))
    finally:
        catcher.__exit__(None, None, None)
    # as RELION's CtfRefine writes them into the optics group
    refined = neutral.assign(rlnBeamTiltX=0.31, rlnOddZernike="[0.021,-0.013,0.002,0.004,-0.001,0.0]",
                             rlnEvenZernike="[0.0,0.0,0.0,0.0,0.0,0.0]", rlnMagMat00=1.004)
    with pytest.warns(DataWarning) as record:
        read_particle_star(_star(tmp_path / "ctfrefine.star", {"optics": refined, "particles": parts}))
    messages = [str(w.message) for w in record if w.category is DataWarning]
    assert len(messages) == 1, messages
    assert "ctfrefine.star: ignored" in messages[0]
    for name in ("rlnBeamTiltX", "rlnOddZernike", "rlnMagMat00"):
        assert name in messages[0]
    for name in ("rlnBeamTiltY", "rlnEvenZernike", "rlnMagMat11"):   # neutral: not named
        assert name not in messages[0]
    # the cryoSPARC equivalents
    path = tmp_path / "J40_particles.cs"
    cs = write_cs(path, parts, "particles.mrcs", 24, 14.933333, optics.iloc[0],
                  extra=[("ctf/tilt_A", "<f4", (2,)), ("ctf/trefoil_A", "<f4", (2,)),
                         ("ctf/tetra_A", "<f4", (4,)), ("ctf/anisomag", "<f4", (4,)),
                         ("ctf/scale", "<f4")])
    cs["ctf/scale"] = 1.0
    np.save(open(path, "wb"), cs)
    catcher = _no_data_warnings()
    try:
        read_particles(path)
    finally:
        catcher.__exit__(None, None, None)
    cs["ctf/tilt_A"][:, 0], cs["ctf/anisomag"][:, 0] = 0.2, 0.003
    np.save(open(path, "wb"), cs)
    with pytest.warns(DataWarning) as record:
        read_particles(path)
    messages = [str(w.message) for w in record if w.category is DataWarning]
    assert len(messages) == 1 and "ctf/tilt_A, ctf/anisomag" in messages[0], messages
    signed = write_cs(path, parts, "particles.mrcs", 24, 14.933333, optics.iloc[0],
                      extra=[("blob/sign", "<f4")])
    signed["blob/sign"] = -1.0
    np.save(open(path, "wb"), signed)
    with pytest.warns(DataWarning, match=r"J40_particles\.cs: blob/sign is -1: the pixels are used as "
                                         r"stored"):
        read_particles(path)


def test_incomplete_pose_columns_warn_and_are_not_read(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    star = _star(tmp_path / "partial.star",
                 {"optics": optics, "particles": parts.drop(columns=["rlnAngleTilt", "rlnOriginYAngst"])})
    with pytest.warns(DataWarning, match=r"partial\.star: incomplete pose columns \(rlnAngleRot, "
                                         r"rlnAnglePsi without rlnAngleTilt; rlnOriginXAngst without "
                                         r"rlnOriginYAngst\)"):
        stack = read_particle_star(star)
    assert stack.rotations is None and stack.shifts is None


# --------------------------------------------------------------------------- 7. STAR layouts

def _same_as_reference(stack, rows=slice(None)):
    ref = _reference()
    assert stack.pixel_size == ref.pixel_size and stack.box_size == 24
    np.testing.assert_allclose(evaluate_ctf(stack.ctf, K), evaluate_ctf(ref.ctf, K)[rows], atol=1e-12)
    np.testing.assert_allclose(stack.rotations, ref.rotations[rows], atol=1e-12)


def test_star_layouts_relion_and_starfile_accept(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    unnamed = _star(tmp_path / "unnamed.star", {"": optics, "particles": parts})
    _same_as_reference(read_particle_star(unnamed))
    keyvalue = _star(tmp_path / "kv.star", {"optics": optics.iloc[0].to_dict(), "particles": parts})
    assert "loop_" not in keyvalue.read_text().split("data_particles")[0]
    _same_as_reference(read_particle_star(keyvalue))
    single = _star(tmp_path / "one.star", {"optics": optics.iloc[0].to_dict(),
                                           "particles": parts.iloc[0].to_dict()})
    one = read_particle_star(single)
    assert len(one) == 1
    _same_as_reference(one, slice(0, 1))
    np.testing.assert_array_equal(next(one.iter_chunks())[1], _images()[:1])
    mac = _star(tmp_path / "mac.star", {"optics": optics, "particles": parts}, newline="\r")
    assert b"\n" not in mac.read_bytes()
    _same_as_reference(read_particle_star(mac))
    # cryodrgn's write_star: 3.1 layout, and its 3.0 form (one unnamed data_ block)
    (tmp_path / "drgn31.star").write_text(cryodrgn_star_text(parts, optics))
    _same_as_reference(read_particle_star(tmp_path / "drgn31.star"))
    flat = parts.drop(columns=["rlnOpticsGroup"]).assign(
        **{c: optics[c][0] for c in optics.columns if c not in ("rlnOpticsGroup", "rlnOpticsGroupName")})
    (tmp_path / "drgn30.star").write_text(cryodrgn_star_text(flat))
    _same_as_reference(read_particle_star(tmp_path / "drgn30.star"))
    two = _star(tmp_path / "two.star", {"a": optics, "b": optics, "particles": parts.drop(
        columns=["rlnOpticsGroup"])})
    with pytest.raises(DataError, match=r"two\.star: no data_optics block and 2 blocks that could be it"):
        read_particle_star(two)
    (tmp_path / "none.star").write_text(star_text({"optics": optics}))
    with pytest.raises(DataError, match=r"none\.star: no data_particles block, and 0 blocks.*"
                                        r"rlnImageName column \(blocks: data_optics\)"):
        read_particle_star(tmp_path / "none.star")


# --------------------------------------------------------------------------- 8. smaller things

def test_cli_star_without_path_is_a_one_line_usage_error(capsys):
    from bench.cli import main
    assert main(["run", "--problem", "star", "--scale", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--problem star needs --path" in err


def test_constant_background_refusal_names_the_way_out(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path, np.full((220, 24, 24), 5.0, np.float32))
    star = _star(tmp_path / "flat.star", {"optics": optics, "particles": parts})
    with pytest.raises(DataError, match=r"flat\.star: image background is constant.*normalise=False"):
        load_problem("star", path=str(star), scale="tiny", progress=False)


def test_cs_object_field_is_named(tmp_path):
    optics, parts = _tables()
    _stack(tmp_path)
    cs = write_cs(tmp_path / "obj.cs", parts, "particles.mrcs", 24, 14.933333, optics.iloc[0])
    obj = np.zeros(len(cs), dtype=[(d[0], "O") if d[0] == "blob/path" else d for d in cs.dtype.descr])
    for name in cs.dtype.names:
        obj[name] = cs[name] if name != "blob/path" else "particles.mrcs"
    np.save(open(tmp_path / "obj.cs", "wb"), obj, allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.cs: field blob/path holds Python objects"):
        read_particles(tmp_path / "obj.cs")


def test_unreadable_mrc_reason_is_not_repeated(tmp_path):
    shutil.copy(TINY / "particles.star", tmp_path / "particles.star")
    path = _stack(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[12:16] = (99).to_bytes(4, "little")             # an unknown mode, MAP identifier intact
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a readable MRC stack") as info:
        read_particle_star(tmp_path / "particles.star")
    message = str(info.value)
    assert message.count("99") == 1, message


def test_map_identifier_warning_points_at_the_callers_line(tmp_path):
    shutil.copy(TINY / "particles.star", tmp_path / "particles.star")
    path = _stack(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"\0\0\0\0"
    path.write_bytes(bytes(raw))
    with pytest.warns(DataWarning, match="Map ID") as record:
        read_particle_star(tmp_path / "particles.star")
    assert [w.filename for w in record if w.category is DataWarning] == [__file__]
