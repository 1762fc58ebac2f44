"""cryoSPARC ``.cs`` particle files (numpy structured arrays) -> :class:`problems.data.particles.ParticleStack`.

Conventions (source: pyem's ``pyem/metadata/cryosparc2.py`` and
``pyem/geom/convert_numba.py``, which ``csparc2star.py`` uses to turn a
``.cs`` file into the equivalent RELION STAR file; cryodrgn's
``parse_pose_csparc`` agrees):

* ``alignments3D/pose`` is a rotation vector ``r``; RELION's rotation matrix
  (the one :func:`problems.model.poses.euler_to_matrix` builds from
  ``rlnAngleRot/Tilt/Psi``) is the *transpose* of the Rodrigues matrix,
  ``A = exp([r]_x)^T`` (pyem's ``expmap`` returns ``r.T``; cryodrgn
  transposes after ``lie_tools.expmap``);
* ``alignments3D/shift`` is RELION's ``rlnOriginX/Y`` in pixels of the
  ``.cs`` file's box (pyem copies it unchanged), so our shift is
  ``s = -shift``;
* ``alignments3D/shift`` is in pixels of ``alignments3D/psize_A`` (the
  refinement's pixel size; cryosparc-tools and cryodrgn multiply the two to
  get Å); when that differs from ``blob/psize_A`` (particles re-extracted or
  downsampled after the refinement), the shifts are *rescaled* to the
  blob's pixels, ``s = -shift * psize_alignments / psize_blob``;
* ``blob/path`` is relative to the cryoSPARC project directory, with an
  optional leading ``>``; ``blob/idx`` is 0-based.

Refused: a pose that is not a 3-component rotation vector (e.g. a
4-component quaternion) or a shift that is not 2 components; fields that
hold Python objects (they need unpickling; the field is named).  Said and
ignored (one :class:`problems.data.particles.DataWarning` naming them): beam
tilt, trefoil, tetrafoil, CTF shift and anisotropic magnification when
non-zero, ``ctf/scale`` when not 1, and ``blob/sign`` when not 1 (the pixels
are used as stored: whether cryoSPARC's data sign should flip them for a
RELION-convention objective is not settled here, so it is said, not applied).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .mrc_stacks import check_stacks, header_nx, named_by
from .particles import (DataError, ParticleStack, numeric, resolve_stack, shared_or_per_particle,
                        unique_images, warn_data)
from .units import ctf_from_microscope


# cryoSPARC fields read by read_cryosparc (all lengths in Å, angles in radians).
CRYOSPARC_REQUIRED = ("blob/path", "blob/idx", "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad",
                      "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")
# Aberrations the objective's CTF does not model, with the value that means "none" (cryoSPARC
# stores ctf/anisomag as the matrix minus the identity).
IGNORED = {"ctf/tilt_A": 0.0, "ctf/trefoil_A": 0.0, "ctf/tetra_A": 0.0, "ctf/shift_A": 0.0,
           "ctf/anisomag": 0.0, "ctf/scale": 1.0}


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """RELION rotation matrices (n, 3, 3) from cryoSPARC rotation vectors (n, 3): ``exp([r]_x)^T``."""
    from scipy.spatial.transform import Rotation

    return np.ascontiguousarray(Rotation.from_rotvec(pose).as_matrix().transpose(0, 2, 1))


def _load(cs: Path) -> np.ndarray:
    if not cs.exists():
        raise DataError(f"{cs}: cryoSPARC file not found")
    try:
        data = np.load(cs, allow_pickle=False)
    except Exception as exc:   # a pickle, a text file, a truncated array...
        objects = _object_fields(cs)
        if objects:
            raise DataError(f"{cs}: field {', '.join(objects)} holds Python objects (dtype O), "
                            f"which only unpickling could read; save the array with fixed-size "
                            f"fields (e.g. bytes 'S' for paths)") from exc
        raise DataError(f"{cs}: not a cryoSPARC .cs file (cryoSPARC writes a numpy structured "
                        f"array, np.save format)") from exc
    if not isinstance(data, np.ndarray) or data.dtype.names is None or data.ndim != 1:
        raise DataError(f"{cs}: not a cryoSPARC .cs file (a numpy array without named fields)")
    return data


def _object_fields(cs: Path) -> list[str]:
    """Names of the fields of dtype object in an ``.npy``-format header (none when unreadable)."""
    try:
        with open(cs, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            dtype = read(fh, max_header_size=1 << 20)[2]
    except Exception:
        return []
    return [name for name in dtype.names or () if dtype.fields[name][0].hasobject]


def _vectors(data: np.ndarray, cs: Path, field: str, size: int, what: str) -> np.ndarray:
    """A per-particle vector field of ``size`` components, float64, or a DataError saying its shape."""
    shape = data.dtype.fields[field][0].shape
    if shape != (size,):
        raise DataError(f"{cs}: field {field} has shape {shape or '()'} per particle; cryoSPARC "
                        f"writes {what} ({size} components)")
    return np.stack([numeric(data[field][:, i], cs, field) for i in range(size)], axis=1)


def _warn_ignored(data: np.ndarray, cs: Path) -> None:
    used = [f for f, neutral in IGNORED.items() if f in data.dtype.names and data.dtype.fields[f][0]
            .base.kind in "biuf" and np.any(np.asarray(data[f], dtype=np.float64) != neutral)]
    said = [f"ignored, the objective's CTF does not model them: {', '.join(used)} (beam tilt, "
            f"trefoil, tetrafoil, CTF shift, anisotropic magnification, CTF scale); the images are "
            f"used as if they had none"] if used else []
    sign = np.unique(data["blob/sign"]) if "blob/sign" in data.dtype.names else np.ones(1)
    if np.any(sign != 1):
        said.append(f"blob/sign is {', '.join(f'{v:g}' for v in sign)}: the pixels are used as "
                    f"stored, not multiplied by it")
    if said:
        warn_data(f"{cs}: " + "; ".join(said))


def read_cryosparc(cs_path: str | os.PathLike, datadir: str | os.PathLike | None = None,
                   pixel_size: float | None = None) -> ParticleStack:
    """Read a cryoSPARC ``.cs`` particle file.

    Field mapping (the one pyem's ``csparc2star`` uses; see the module docstring):

    ==========================  =============================================
    ``blob/path``, ``blob/idx``  stack file and 0-based index; the path is found
                                 by :func:`problems.data.particles.resolve_stack`
                                 (``datadir``, then the ``.cs`` file's folder and
                                 its parents, then beside it)
    ``blob/psize_A``             pixel size (else ``pixel_size``); must be the
                                 same for every particle
    ``ctf/df1_A``, ``df2_A``     defocus U, V (Å)
    ``ctf/df_angle_rad``         astigmatism angle (radians)
    ``ctf/accel_kv``, ``cs_mm``  voltage (kV), spherical aberration (mm), per particle
    ``ctf/amp_contrast``         amplitude contrast, per particle
    ``ctf/phase_shift_rad``      phase shift (optional)
    ``ctf/bfactor``              B-factor (optional, Å^2)
    ``alignments3D/pose``        rotation vector ``r``, RELION matrix
                                 ``exp([r]_x)^T`` (optional)
    ``alignments3D/shift``       RELION origin in pixels of ``alignments3D/psize_A``
                                 (default: the blob's), ``s = -shift * psize_align
                                 / psize_blob`` (optional)
    ==========================  =============================================

    Ignored, with one warning when not neutral: ``ctf/scale`` (pyem does not
    map it either), beam tilt, trefoil, tetrafoil, CTF shift and anisotropic
    magnification (aberrations the objective does not model).  Particles
    that repeat an image are dropped with a warning
    (:func:`problems.data.particles.unique_images`).

    Raises
    ------
    DataError
        Naming the file, the particle row and the field of the first bad value.
    """
    cs = Path(cs_path)
    data = _load(cs)
    names = set(data.dtype.names)
    for field in CRYOSPARC_REQUIRED:
        if field not in names:
            raise DataError(f"{cs}: missing field {field}")
    if data.shape[0] == 0:
        raise DataError(f"{cs}: no particles")
    col = lambda field, **kw: numeric(data[field], cs, field, **kw)  # noqa: E731
    files, resolved = [], {}
    for raw in data["blob/path"]:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text not in resolved:
            resolved[text] = resolve_stack(text[1:] if text.startswith(">") else text, cs,
                                           "blob/path", datadir)
        files.append(resolved[text])
    slices = col("blob/idx")
    if (slices < 0).any() or (slices != np.round(slices)).any():
        row = int(np.flatnonzero((slices < 0) | (slices != np.round(slices)))[0])
        raise DataError(f"{cs}: particle {row + 1}: blob/idx = {slices[row]:g} is not an index >= 0")
    slices = slices.astype(np.int64)
    apix = _pixel_size(data, cs, names, pixel_size)
    if "blob/shape" in names:
        shape = np.asarray(data["blob/shape"][0]).ravel()
        if shape.size == 2 and shape[0] != shape[1]:
            raise DataError(f"{cs}: field blob/shape is {tuple(shape)}; cryoopt needs square images")
        box = int(shape[-1])
    else:
        with named_by(cs, "blob/path", 0):
            box = header_nx(files[0])
    check_stacks(files, slices, box, cs, "blob/path")
    optional = lambda field, **kw: col(field, **kw) if field in names else 0.0  # noqa: E731
    ctf = ctf_from_microscope(
        pixel_size=apix, defocus_u_angstrom=col("ctf/df1_A"), defocus_v_angstrom=col("ctf/df2_A"),
        astigmatism_angle_deg=np.rad2deg(col("ctf/df_angle_rad")),
        voltage_kv=shared_or_per_particle(col("ctf/accel_kv", positive=True)),
        cs_mm=shared_or_per_particle(col("ctf/cs_mm")),
        amplitude_contrast=shared_or_per_particle(col("ctf/amp_contrast", unit_interval=True)),
        bfactor_angstrom2=optional("ctf/bfactor"),
        phase_shift_deg=np.rad2deg(optional("ctf/phase_shift_rad")))
    rotations = shifts = None
    if "alignments3D/pose" in names:
        rotations = pose_to_matrix(_vectors(data, cs, "alignments3D/pose", 3, "a rotation vector"))
    if "alignments3D/shift" in names:
        shifts = -_vectors(data, cs, "alignments3D/shift", 2, "a shift in pixels")
        if "alignments3D/psize_A" in names:        # shifts are in the refinement's pixels
            shifts *= (numeric(data["alignments3D/psize_A"], cs, "alignments3D/psize_A",
                               positive=True) / apix)[:, None]
    _warn_ignored(data, cs)
    return unique_images(ParticleStack(cs, box, apix, ctf, rotations, shifts, files, slices,
                                       "blob/path"))


def _pixel_size(data: np.ndarray, cs: Path, names: set, given: float | None) -> float:
    if given is not None and not (np.isfinite(given) and given > 0):
        raise DataError(f"{cs}: pixel_size={given!r} must be a number > 0")
    if "blob/psize_A" not in names:
        if given is None:
            raise DataError(f"{cs}: missing field blob/psize_A; pass pixel_size= "
                            f"(CLI: --problem-arg pixel_size=1.06)")
        return float(given)
    pixel = numeric(data["blob/psize_A"], cs, "blob/psize_A", positive=True)
    differ = ~np.isclose(pixel, pixel[0], rtol=1e-6)
    if differ.any():
        row = int(np.flatnonzero(differ)[0])
        raise DataError(f"{cs}: particle {row + 1}: blob/psize_A {pixel[row]:g} differs from particle "
                        f"1's {pixel[0]:g}; cryoopt needs one pixel size per stack")
    if given is not None and not np.isclose(given, pixel[0], rtol=1e-4):
        raise DataError(f"{cs}: blob/psize_A says {pixel[0]:g} Å but pixel_size={given:g} was passed")
    return float(pixel[0])
