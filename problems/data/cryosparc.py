"""cryoSPARC ``.cs`` particle files (numpy structured arrays) -> :class:`problems.data.io.ParticleStack`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import DataError, ParticleStack, _check_ctf_finite, _check_stacks, _header_nx
from .units import ctf_from_microscope


# cryoSPARC fields read by read_cryosparc (all lengths in Å, angles in radians).
CRYOSPARC_REQUIRED = ("blob/path", "blob/idx", "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad",
                      "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")


def read_cryosparc(cs_path: str | os.PathLike, project_dir: str | os.PathLike | None = None,
                   pixel_size: float | None = None) -> ParticleStack:
    """Read a cryoSPARC ``.cs`` particle file (a numpy structured array, ``np.save`` format).

    Field mapping (the one pyem's ``csparc2star`` uses):

    ==========================  =============================================
    ``blob/path``, ``blob/idx``  stack file (relative to the project directory;
                                 a leading ``>`` is dropped) and 0-based index
    ``blob/psize_A``             pixel size (else ``pixel_size``)
    ``ctf/df1_A``, ``df2_A``     defocus U, V (Å)
    ``ctf/df_angle_rad``         astigmatism angle (radians)
    ``ctf/accel_kv``, ``cs_mm``  voltage (kV), spherical aberration (mm)
    ``ctf/amp_contrast``         amplitude contrast
    ``ctf/phase_shift_rad``      phase shift (optional)
    ``ctf/bfactor``              B-factor (optional, Å^2)
    ``alignments3D/pose``        rotation vector ``r``; RELION's matrix is
                                 ``A = exp([r]_x)`` (Rodrigues), optional
    ``alignments3D/shift``       RELION origin in pixels (so our shift
                                 ``s = -shift``), optional
    ==========================  =============================================

    Stack paths are resolved against ``project_dir`` (default: the ``.cs``
    file's folder, then its parents).
    """
    from scipy.spatial.transform import Rotation

    cs = Path(cs_path)
    if not cs.exists():
        raise DataError(f"{cs}: cryoSPARC file not found")
    try:
        data = np.load(cs, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{cs}: not a readable cryoSPARC .cs file ({exc})") from exc
    names = set(data.dtype.names or ())
    for field in CRYOSPARC_REQUIRED:
        if field not in names:
            raise DataError(f"{cs}: missing field {field}")
    if data.shape[0] == 0:
        raise DataError(f"{cs}: no particles")
    roots = [Path(project_dir)] if project_dir is not None else [cs.parent, *cs.parent.parents]
    files, resolved = [], {}
    for raw in data["blob/path"]:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text not in resolved:
            rel = text[1:] if text.startswith(">") else text
            found = next((r / rel for r in roots if (r / rel).exists()), roots[0] / rel)
            resolved[text] = found.resolve()
        files.append(resolved[text])
    slices = np.asarray(data["blob/idx"], dtype=np.int64)
    if (slices < 0).any():
        raise DataError(f"{cs}: field blob/idx has negative indices")
    if "blob/psize_A" in names:
        apix = float(data["blob/psize_A"][0])
    elif pixel_size is not None:
        apix = float(pixel_size)
    else:
        raise DataError(f"{cs}: missing field blob/psize_A (or pass pixel_size=)")
    if "blob/shape" in names:
        shape = np.asarray(data["blob/shape"][0]).ravel()
        if shape.size == 2 and shape[0] != shape[1]:
            raise DataError(f"{cs}: field blob/shape is {tuple(shape)}; cryoopt needs square images")
        box = int(shape[-1])
    else:
        box = _header_nx(files[0], cs, "blob/path")
    _check_stacks(files, slices, box, cs, "blob/path")
    optional = lambda field: np.asarray(data[field], float) if field in names else 0.0  # noqa: E731
    ctf = ctf_from_microscope(
        pixel_size=apix, defocus_u_angstrom=np.asarray(data["ctf/df1_A"], float),
        defocus_v_angstrom=np.asarray(data["ctf/df2_A"], float),
        astigmatism_angle_deg=np.rad2deg(np.asarray(data["ctf/df_angle_rad"], float)),
        voltage_kv=float(data["ctf/accel_kv"][0]), cs_mm=float(data["ctf/cs_mm"][0]),
        amplitude_contrast=float(data["ctf/amp_contrast"][0]),
        bfactor_angstrom2=optional("ctf/bfactor"),
        phase_shift_deg=np.rad2deg(optional("ctf/phase_shift_rad")))
    _check_ctf_finite(ctf, cs)
    rotations = shifts = None
    if "alignments3D/pose" in names:
        rotations = Rotation.from_rotvec(np.asarray(data["alignments3D/pose"], float)).as_matrix()
    if "alignments3D/shift" in names:
        shifts = -np.asarray(data["alignments3D/shift"], float)
    return ParticleStack(cs, box, apix, ctf, rotations, shifts, files, slices, "blob/path")
