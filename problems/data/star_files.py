"""RELION STAR particle files (3.0 single block, 3.1+ ``optics`` + ``particles``) -> :class:`ParticleStack`.

RELION conventions used (source: RELION's ``ctf.h`` / ``euler.cpp`` and the
3.1 STAR format; see the README's real-data section):

* Euler angles ZYZ in degrees (``rlnAngleRot/Tilt/Psi``), matrix
  ``Rz(psi) Ry(tilt) Rz(rot)`` (:func:`problems.model.poses.euler_to_matrix`);
* the image is the projection shifted by *minus* the origin
  (``rlnOriginX/YAngst`` in Å, or ``rlnOriginX/Y`` in pixels in 3.0), so
  our shift is ``s = -origin / pixel_size``;
* defocus in Å, angle in degrees, Cs in mm, voltage in kV, B-factor in Å^2
  (``CTF *= exp(-B k^2 / 4)``, ``k`` in 1/Å) and ``rlnCtfScalefactor``
  multiplying the whole CTF, as in ``CTF::getCTF``;
* optics-group columns (3.1) apply to the particles of their group; a
  particles block without ``rlnOpticsGroup`` is group 1, as RELION reads it;
* ``rlnImageName`` is ``N@stack`` (1-based ``N``) or a file name alone,
  which RELION reads as the whole file: accepted only when the file holds
  exactly one 2D image.

Layouts read as RELION and ``starfile`` read them: ``data_optics`` as a
loop or as key-value pairs, an optics block without a name (``data_``,
recognised by ``rlnOpticsGroup`` and no ``rlnImageName``), a single
particle written as key-value pairs, CR-only (classic Mac) line endings.

Refused (one :class:`DataError` naming file, row and reason): 3D particles
(``rlnImageDimensionality`` 3, subtomograms) and CTF-premultiplied images
(``rlnCtfDataAreCtfPremultiplied`` 1), since the objective's forward model
multiplies raw 2D images' projections by the CTF once.  Said and ignored
(one :class:`DataWarning` per file naming the fields): beam tilt, odd and
even Zernike aberrations and the anisotropic magnification matrix, when
they are not zero (identity); pose columns that are incomplete (a missing
angle or origin column: the file's poses are not read).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ..model.poses import euler_to_matrix
from .mrc_stacks import check_stacks, header_nx, named_by
from .particles import (DataError, ParticleStack, numeric, resolve_stack, shared_or_per_particle,
                        unique_images, warn_data)
from .units import ctf_from_microscope

# Columns without which the CTF cannot be evaluated (B-factor, phase shift and scale have defaults).
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast")
# Aberrations the objective's CTF does not model, with the value that means "none".
IGNORED = {"rlnBeamTiltX": 0.0, "rlnBeamTiltY": 0.0, "rlnOddZernike": 0.0, "rlnEvenZernike": 0.0,
           "rlnMagMat00": 1.0, "rlnMagMat01": 0.0, "rlnMagMat10": 0.0, "rlnMagMat11": 1.0}
POSE_GROUPS = (("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"), ("rlnOriginXAngst", "rlnOriginYAngst"),
               ("rlnOriginX", "rlnOriginY"))


def _read_blocks(star: Path) -> dict[str, pd.DataFrame]:
    """The file's blocks as tables (key-value blocks become one-row tables); CR-only endings read."""
    with open(star, "rb") as fh:
        head = fh.read(1 << 16)
    try:
        if b"\r" in head and b"\n" not in head:    # classic Mac endings: starfile sees one line
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / star.name
                copy.write_bytes(star.read_bytes().replace(b"\r", b"\n"))
                blocks = starfile.read(copy, always_dict=True)
        else:
            blocks = starfile.read(star, always_dict=True)
    except Exception as exc:
        raise DataError(f"{star}: cannot parse STAR file ({exc})") from exc
    tables = {}
    for name, block in blocks.items():
        if isinstance(block, dict) and block:            # key-value pairs: one row
            block = pd.DataFrame({key: [value] for key, value in block.items()})
        if isinstance(block, pd.DataFrame):
            tables[name] = block
    return tables


def _particles_and_optics(blocks: dict, star: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The particle table, and the optics table when there is one (named or not)."""
    listing = ", ".join(f"data_{name}" for name in blocks) or "none"
    if "particles" in blocks:
        particles = blocks["particles"]
    else:
        tables = [b for b in blocks.values() if "rlnImageName" in b]
        if len(tables) != 1:
            raise DataError(f"{star}: no data_particles block, and {len(tables)} blocks (not one) "
                            f"with an rlnImageName column (blocks: {listing})")
        particles = tables[0]
    optics = blocks.get("optics")
    if optics is None:                                   # an unnamed optics block (data_)
        others = [b for b in blocks.values() if b is not particles and "rlnOpticsGroup" in b
                  and "rlnImageName" not in b]
        if len(others) > 1:
            raise DataError(f"{star}: no data_optics block and {len(others)} blocks that could be "
                            f"it (rlnOpticsGroup without rlnImageName; blocks: {listing})")
        optics = others[0] if others else None
    if len(particles) == 0:
        raise DataError(f"{star}: no particles (the particle block has no rows; blocks: {listing})")
    return particles, (None if optics is particles else optics)


def _first_bad(particles: pd.DataFrame, star: Path, column: str, ok) -> int | None:
    if column not in particles.columns:
        return None
    values = numeric(particles[column], star, column)
    bad = np.flatnonzero(~ok(values))
    return int(bad[0]) if bad.size else None


def _refuse_unmodelled(particles: pd.DataFrame, star: Path) -> None:
    """3D particles and CTF-premultiplied images: the objective's forward model fits neither."""
    row = _first_bad(particles, star, "rlnImageDimensionality", lambda v: v == 2)
    if row is not None:
        value = particles["rlnImageDimensionality"].iloc[row]
        raise DataError(f"{star}: particle {row + 1}: rlnImageDimensionality = {value}: cryoopt "
                        f"reads 2D particle images only (3 means subtomograms)")
    row = _first_bad(particles, star, "rlnCtfDataAreCtfPremultiplied", lambda v: v == 0)
    if row is not None:
        raise DataError(f"{star}: particle {row + 1}: rlnCtfDataAreCtfPremultiplied = 1: the "
                        f"images were multiplied by their CTF, but the objective's forward model "
                        f"assumes raw images and applies the CTF itself")


def _numbers(value) -> list[float]:
    """The numbers in a value: a number, or a Zernike list written as text (``[0.1,-0.2]``)."""
    if isinstance(value, (int, float, np.number)):
        return [float(value)]
    found = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", str(value))
    return [float(x) for x in found] if found else [float("nan")]


def _warn_ignored(particles: pd.DataFrame, star: Path) -> None:
    """One warning naming the unmodelled aberration fields that are not at their neutral value."""
    used = [c for c, neutral in IGNORED.items() if c in particles.columns and any(
        x != neutral for v in particles[c].unique() for x in _numbers(v))]
    if used:
        warn_data(f"{star}: ignored, the objective's CTF does not model them: {', '.join(used)} "
                  f"(beam tilt, odd / even Zernike aberrations, anisotropic magnification); the "
                  f"images are used as if they had none")
    partial = [(have, [c for c in group if c not in particles.columns]) for group in POSE_GROUPS
               if 0 < len(have := [c for c in group if c in particles.columns]) < len(group)]
    if partial:
        said = "; ".join(f"{', '.join(h)} without {', '.join(m)}" for h, m in partial)
        warn_data(f"{star}: incomplete pose columns ({said}): the file's poses (angles, "
                  f"origins) are read only from complete columns")


def _apply_optics(particles: pd.DataFrame, optics: pd.DataFrame, star: Path) -> pd.DataFrame:
    """Copy each optics group's columns onto its particles (missing ``rlnOpticsGroup`` = group 1)."""
    if "rlnOpticsGroup" not in optics.columns:
        raise DataError(f"{star}: data_optics has no rlnOpticsGroup column")
    groups = numeric(optics["rlnOpticsGroup"], star, "rlnOpticsGroup", rows="optics row")
    if len(set(groups)) != len(groups):
        raise DataError(f"{star}: data_optics lists an rlnOpticsGroup twice")
    if "rlnOpticsGroup" in particles.columns:
        member = numeric(particles["rlnOpticsGroup"], star, "rlnOpticsGroup")
    else:
        member = np.ones(len(particles))              # RELION: no column means optics group 1
    where = pd.Index(groups).get_indexer(member)
    if (where < 0).any():
        row = int(np.flatnonzero(where < 0)[0])
        raise DataError(f"{star}: particle {row + 1}: rlnOpticsGroup {member[row]:g} is not in "
                        f"data_optics (groups {sorted(int(g) for g in groups)})")
    particles = particles.copy()
    for col in optics.columns:
        if col != "rlnOpticsGroup" and col not in particles.columns:
            particles[col] = optics[col].to_numpy()[where]
    return particles


def _pixel_size(particles: pd.DataFrame, star: Path, given: float | None) -> float:
    cols = particles.columns
    if "rlnImagePixelSize" in cols:
        pixel = numeric(particles["rlnImagePixelSize"], star, "rlnImagePixelSize", positive=True)
        field = "rlnImagePixelSize"
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(cols):   # RELION 3.0: µm and mag
        pixel = (numeric(particles["rlnDetectorPixelSize"], star, "rlnDetectorPixelSize", positive=True)
                 * 1e4 / numeric(particles["rlnMagnification"], star, "rlnMagnification", positive=True))
        field = "rlnDetectorPixelSize / rlnMagnification"
    elif given is not None:
        pixel, field = np.full(len(particles), float(given)), "pixel_size"
    else:
        raise DataError(f"{star}: no pixel size (neither rlnImagePixelSize nor rlnDetectorPixelSize "
                        f"and rlnMagnification); pass pixel_size= (CLI: --problem-arg pixel_size=1.06)")
    if not np.allclose(pixel, pixel[0], rtol=1e-6):
        row = int(np.flatnonzero(~np.isclose(pixel, pixel[0], rtol=1e-6))[0])
        raise DataError(f"{star}: particle {row + 1}: {field} {pixel[row]:g} differs from particle "
                        f"1's {pixel[0]:g} (optics groups); cryoopt needs one pixel size per stack")
    if given is not None and not np.isclose(given, pixel[0], rtol=1e-4):
        raise DataError(f"{star}: {field} says {pixel[0]:g} Å but pixel_size={given:g} was passed")
    return float(pixel[0])


def parse_image_names(names, source: Path, field: str,
                      datadir=None) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """``N@stack`` (1-based) or a file name alone -> (stack paths, 0-based slices, which are whole files).

    A name without ``N@`` is the whole file to RELION; it becomes slice 0,
    and :func:`problems.data.mrc_stacks.check_stacks` then requires the
    file to hold exactly one image.
    """
    files, slices, whole, resolved = [], [], [], {}
    for row, name in enumerate(names):
        text = name.decode() if isinstance(name, bytes) else str(name)
        idx, at, fname = text.partition("@")
        whole.append(not at)
        if not at:
            idx, fname = "1", text                    # the whole file: one image (checked)
        if not fname or not idx.strip().isdigit() or int(idx) < 1:
            raise DataError(f"{source}: particle {row + 1}: {field} {text!r} is not of the form "
                            f"N@stack.mrcs (N >= 1) or a file name")
        if fname not in resolved:
            resolved[fname] = resolve_stack(fname, source, field, datadir)
        files.append(resolved[fname])
        slices.append(int(idx) - 1)
    return files, np.asarray(slices, dtype=np.int64), np.asarray(whole, dtype=bool)


def read_particle_star(star_path: str | os.PathLike, datadir: str | os.PathLike | None = None,
                       pixel_size: float | None = None) -> ParticleStack:
    """Read a RELION STAR file and locate its image stacks.

    Parameters
    ----------
    star_path : path of the STAR file
    datadir : folder to look for stacks first (see :func:`problems.data.particles.resolve_stack`)
    pixel_size : float, optional
        Å per pixel, for a file that has none (RELION 3.0 without detector
        pixel size); must agree with the file's when it has one.

    Raises
    ------
    DataError
        Naming the file, the particle row and the field of the first bad value.
    """
    star = Path(star_path)
    if not star.exists():
        raise DataError(f"{star}: STAR file not found")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise DataError(f"{star}: pixel_size={pixel_size!r} must be a number > 0")
    particles, optics = _particles_and_optics(_read_blocks(star), star)
    if optics is not None:
        particles = _apply_optics(particles, optics, star)
    _refuse_unmodelled(particles, star)
    apix = _pixel_size(particles, star, pixel_size)
    if "rlnImageName" not in particles.columns:
        raise DataError(f"{star}: missing column rlnImageName")
    files, slices, whole = parse_image_names(particles["rlnImageName"], star, "rlnImageName", datadir)
    if "rlnImageSize" in particles.columns:
        box = int(numeric(particles["rlnImageSize"], star, "rlnImageSize", positive=True)[0])
    else:
        with named_by(star, "rlnImageName", 0):
            box = header_nx(files[0])
    check_stacks(files, slices, box, star, "rlnImageName", whole)
    _warn_ignored(particles, star)
    for name in CTF_COLUMNS:
        if name not in particles.columns:
            raise DataError(f"{star}: missing column {name}")
    col = lambda name, **kw: numeric(particles[name], star, name, **kw)  # noqa: E731
    opt = lambda name, default, **kw: col(name, **kw) if name in particles.columns else default  # noqa: E731
    ctf = ctf_from_microscope(
        pixel_size=apix, defocus_u_angstrom=col("rlnDefocusU"), defocus_v_angstrom=col("rlnDefocusV"),
        astigmatism_angle_deg=col("rlnDefocusAngle"),
        voltage_kv=shared_or_per_particle(col("rlnVoltage", positive=True)),
        cs_mm=shared_or_per_particle(col("rlnSphericalAberration")),
        amplitude_contrast=shared_or_per_particle(col("rlnAmplitudeContrast", unit_interval=True)),
        bfactor_angstrom2=opt("rlnCtfBfactor", 0.0),
        phase_shift_deg=opt("rlnPhaseShift", 0.0),
        scale=shared_or_per_particle(opt("rlnCtfScalefactor", np.ones(1), positive=True)))
    rotations = shifts = None
    if {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(particles.columns):
        rotations = euler_to_matrix(*(np.deg2rad(col(c)) for c in
                                      ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    if {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(particles.columns):
        shifts = -np.stack([col("rlnOriginXAngst"), col("rlnOriginYAngst")], axis=1) / apix
    elif {"rlnOriginX", "rlnOriginY"} <= set(particles.columns):       # RELION 3.0: pixels
        shifts = -np.stack([col("rlnOriginX"), col("rlnOriginY")], axis=1)
    return unique_images(ParticleStack(star, box, apix, ctf, rotations, shifts, files, slices))
