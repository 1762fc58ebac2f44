"""Writers of real-format files for the tests, written from the *other* tools' conventions.

Nothing here calls the project's readers or writers, so a test that loads
these files checks the project against the conventions, not against itself.

* :func:`relion_matrix` is RELION's ``Euler_angles2matrix`` (``euler.cpp``),
  as pyem's ``geom.euler2rot`` writes it out;
* :func:`pyem_expmap` is pyem's ``geom.expmap`` (``pyem/geom/convert_numba.py``):
  the Rodrigues matrix of a rotation vector, *transposed*; pyem's
  ``csparc2star`` maps a ``.cs`` ``alignments3D/pose`` to RELION angles by
  ``rot2euler(expmap(pose))``, and ``alignments3D/shift`` to ``rlnOriginX/Y``
  (pixels) unchanged;
* :func:`cs_pose_from_relion` inverts :func:`pyem_expmap` (axis-angle of ``A^T``);
* :func:`star_text` writes STAR text as RELION 3.1 does (``# version 30001``,
  ``loop_``, ``_rlnName #i``), or key-value blocks (``_rlnName value``) for
  the blocks given as dicts, as RELION writes a one-row table;
* :func:`cryodrgn_star_text` writes it as cryodrgn's ``starfile.write_star``
  does: ``data_optics`` + ``data_particles``, or one unnamed ``data_`` block
  without optics (its RELION 3.0 form); column names without ``#i``; values
  by ``str``.
"""
from __future__ import annotations

import numpy as np


def relion_matrix(rot_deg: float, tilt_deg: float, psi_deg: float) -> np.ndarray:
    """RELION's rotation matrix from ``rlnAngleRot/Tilt/Psi`` (pyem ``euler2rot``)."""
    a, b, g = np.deg2rad([rot_deg, tilt_deg, psi_deg])
    ca, cb, cg, sa, sb, sg = np.cos(a), np.cos(b), np.cos(g), np.sin(a), np.sin(b), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def pyem_expmap(e: np.ndarray) -> np.ndarray:
    """pyem's ``expmap``: ``(I + sin t K + (1 - cos t) K^2)^T`` with ``K = [e / t]_x``."""
    theta = np.linalg.norm(e)
    if theta < 1e-16:
        return np.identity(3)
    w = e / theta
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    r = np.identity(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k
    return r.T


def _axis_angle(r: np.ndarray) -> np.ndarray:
    """Rotation vector ``t w`` with Rodrigues matrix ``r`` (robust near ``t = pi``)."""
    c = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(c)
    skew = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])   # 2 sin(t) w
    if theta < 1e-9:
        return skew / 2
    if np.sin(theta) > 1e-3:
        return theta * skew / (2 * np.sin(theta))
    outer = ((r + r.T) / 2 - c * np.identity(3)) / (1 - c)                      # w w^T
    i = int(np.argmax(np.diag(outer)))
    w = outer[:, i] / np.sqrt(outer[i, i])
    return theta * (w if w @ skew >= 0 else -w)


def cs_pose_from_relion(rot_deg: float, tilt_deg: float, psi_deg: float) -> np.ndarray:
    """The ``alignments3D/pose`` that pyem converts to these RELION angles."""
    a = relion_matrix(rot_deg, tilt_deg, psi_deg)
    pose = _axis_angle(a.T)
    assert np.allclose(pyem_expmap(pose), a, atol=1e-9)    # the writer checks itself
    return pose


def _fmt(v) -> str:
    return f"{v:.6f}" if isinstance(v, (float, np.floating)) else str(v)


def star_text(blocks: dict, newline: str = "\n") -> str:
    """STAR text as RELION 3.1 writes it; a dict block is written as key-value pairs."""
    out = ["", "# version 30001", ""]
    for name, block in blocks.items():
        out += [f"data_{name}", ""]
        if isinstance(block, dict):
            out += [f"_{key} {_fmt(value)}" for key, value in block.items()]
        else:
            out += ["loop_", *(f"_{c} #{i + 1}" for i, c in enumerate(block.columns))]
            out += [" ".join(_fmt(v) for v in row) for row in block.itertuples(index=False)]
        out.append("")
    return newline.join(out) + newline


def cryodrgn_star_text(data, optics=None) -> str:
    """STAR text as cryodrgn's ``write_star`` / ``_write_star_block`` write it."""
    def block(df, header):
        rows = [" ".join(str(v) for v in row) for row in df.itertuples(index=False)]
        return [f"{header}", "", "loop_", *(f"_{c}" for c in df.columns), *rows]
    out = ["# Created 2026-12-04 14:00:00.000000", ""]
    if optics is not None:
        out += [*block(optics, "data_optics"), "", "", *block(data, "data_particles")]
    else:
        out += block(data, "data_")
    return "\n".join(out) + "\n"


CS_DTYPE = [("uid", "<u8"), ("blob/path", "S96"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
            ("blob/psize_A", "<f4"), ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
            ("ctf/amp_contrast", "<f4"), ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"),
            ("ctf/df_angle_rad", "<f4"), ("ctf/phase_shift_rad", "<f4"), ("ctf/bfactor", "<f4"),
            ("alignments3D/pose", "<f4", (3,)), ("alignments3D/shift", "<f4", (2,))]


def write_cs(path, particles, blob_path: str, box: int, apix: float, optics: dict,
             extra: tuple = ()) -> np.ndarray:
    """A cryoSPARC ``.cs`` file for the particles of a RELION STAR table (pyem's mapping, inverted).

    ``particles`` holds RELION columns (angles in degrees, ``rlnOriginX/YAngst``
    in Å, defocus in Å); ``optics`` the voltage, Cs and amplitude contrast.
    ``extra`` fields (numpy dtype entries, e.g. ``("ctf/tilt_A", "<f4", (2,))``,
    as cryoSPARC writes them) are added zero-filled; returns the array written.
    """
    n = len(particles)
    cs = np.zeros(n, dtype=CS_DTYPE + list(extra))
    cs["uid"] = np.arange(n) + 10**12
    cs["blob/path"] = blob_path.encode()
    cs["blob/idx"] = np.arange(n)
    cs["blob/shape"] = box
    cs["blob/psize_A"] = apix
    cs["ctf/accel_kv"], cs["ctf/cs_mm"] = optics["rlnVoltage"], optics["rlnSphericalAberration"]
    cs["ctf/amp_contrast"] = optics["rlnAmplitudeContrast"]
    cs["ctf/df1_A"], cs["ctf/df2_A"] = particles["rlnDefocusU"], particles["rlnDefocusV"]
    cs["ctf/df_angle_rad"] = np.deg2rad(particles["rlnDefocusAngle"])
    cs["ctf/bfactor"] = particles["rlnCtfBfactor"]
    cs["alignments3D/pose"] = [cs_pose_from_relion(*row) for row in
                               particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()]
    # pyem: rlnOriginX/Y (pixels) = alignments3D/shift
    cs["alignments3D/shift"] = particles[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / apix
    with open(path, "wb") as fh:
        np.save(fh, cs)
    return cs
