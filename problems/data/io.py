"""File boundary: RELION STAR / cryoSPARC .cs + MRC stacks in, pixel units out.

The only module (with :mod:`problems.data.units`) where Ångström appear.  Reads
RELION 3.1+ STAR files (``optics`` + ``particles`` blocks), 3.0 files (one
block, optics columns per particle, pixel size from ``rlnImagePixelSize`` or
``rlnDetectorPixelSize`` / ``rlnMagnification``), in
:mod:`problems.data.star_files`, and cryoSPARC ``.cs`` files (a numpy
structured array), in :mod:`problems.data.cryosparc`; both locate their
stacks by one rule (:func:`problems.data.particles.resolve_stack`).  Image
stacks are read by positioned reads (:mod:`problems.data.mrc_stacks`), so a
stack larger than memory is read chunk by chunk.

Bad input (a missing stack, an image index beyond a stack's end, an MRC
whose size disagrees with its header, a complex or unknown mode, a missing
CTF column, a non-numeric or out-of-range value, non-square images, a name
without ``N@`` for a multi-image file, 3D or CTF-premultiplied particles, a
malformed ``.cs`` field, NaN pixels) raises one :class:`DataError` whose
message names the file, the particle row and the reason; headers and index
ranges are checked when the particle file is opened, pixels when they are
read.  What is read but not modelled (duplicate images, beam tilt and other
aberrations, incomplete poses) gives one :class:`DataWarning` per file.
Nothing here writes except :func:`write_mrc` and
:func:`write_particles`, which write under temporary names and rename.

RELION conventions used (see ../shared/DATA.md): Euler angles ZYZ in degrees
(``rlnAngleRot/Tilt/Psi``, matrix ``Rz(psi) Ry(tilt) Rz(rot)``); the image is
the projection shifted by *minus* the origin (``rlnOriginX/YAngst``), i.e.
our shift ``s = -origin / pixel_size``; defocus in Å, Cs in mm, voltage in kV.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

# The readers live in their own modules (particles, mrc_stacks, star_files, cryosparc); these
# names stay importable from here.
from .particles import DataError, DataWarning, ParticleStack, resolve_stack  # noqa: F401
from .star_files import read_particle_star  # noqa: F401


def read_particles(path: str | os.PathLike, datadir: str | os.PathLike | None = None,
                   pixel_size: float | None = None) -> ParticleStack:
    """Read a particle file by its suffix (any case): ``.star`` (RELION) or ``.cs`` (cryoSPARC).

    ``datadir`` and ``pixel_size`` mean the same for both (see
    :func:`problems.data.star_files.read_particle_star`).
    """
    from .cryosparc import read_cryosparc

    path = Path(path)
    if path.suffix.lower() == ".cs":
        return read_cryosparc(path, datadir=datadir, pixel_size=pixel_size)
    if path.suffix.lower() == ".star":
        return read_particle_star(path, datadir=datadir, pixel_size=pixel_size)
    raise DataError(f"{path}: unknown particle file type {path.suffix!r} (expected .star or .cs)")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed over ``path`` when the block succeeds.

    ``os.replace`` is atomic on POSIX, so readers see the old file or the
    complete new one, never a half-written one; on an exception (or
    ``KeyboardInterrupt``) the temporary file is removed and ``path`` is
    untouched.  The process id in the name keeps concurrent writers (sweep
    workers) apart.  The one atomic-write helper of the project (bench uses
    it for run records and leaderboard entries).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)     # nothing half-written survives a failure


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_mrc(path: str | os.PathLike, data: np.ndarray, pixel_size: float) -> None:
    """Write a volume (or image stack) atomically."""
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = pixel_size


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a volume; returns (data float32, pixel size Å)."""
    with mrcfile.open(path, permissive=False) as mrc:
        return np.array(mrc.data, dtype=np.float32), float(mrc.voxel_size.x)


def write_particles(directory: str | os.PathLike, chunks, n_images: int, box: int,
                    pixel_size: float, ctf_physical: dict, euler_deg: np.ndarray,
                    shifts_px: np.ndarray, stack_name: str = "particles.mrcs",
                    star_name: str = "particles.star", progress=None, mrc_mode: int = 2) -> Path:
    """Write an image stack (from an iterator of chunks) and its RELION 3.1 STAR file.

    Both files are written under temporary names and renamed at the end, so
    an interrupted write leaves nothing that looks complete.  ``mrc_mode`` 2
    stores float32, 1 int16 (chunks are rounded: scale them first).
    """
    directory = Path(directory)
    stack, star = directory / stack_name, directory / star_name
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnImagePixelSize": [pixel_size], "rlnImageSize": [box], "rlnImageDimensionality": [2],
        "rlnVoltage": [ctf_physical["voltage_kv"]],
        "rlnSphericalAberration": [ctf_physical["cs_mm"]],
        "rlnAmplitudeContrast": [ctf_physical["amplitude_contrast"]],
    })
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(n_images)],
        "rlnOpticsGroup": np.ones(n_images, dtype=int),
        "rlnDefocusU": ctf_physical["defocus_u"], "rlnDefocusV": ctf_physical["defocus_v"],
        "rlnDefocusAngle": ctf_physical["defocus_angle"],
        "rlnCtfBfactor": ctf_physical["bfactor"], "rlnPhaseShift": np.zeros(n_images),
        "rlnAngleRot": euler_deg[:, 0], "rlnAngleTilt": euler_deg[:, 1],
        "rlnAnglePsi": euler_deg[:, 2],
        "rlnOriginXAngst": -shifts_px[:, 0] * pixel_size,
        "rlnOriginYAngst": -shifts_px[:, 1] * pixel_size,
    })
    # The stack is renamed into place before the STAR file that names it (inner block exits first).
    # mrcfile lays out the header; the pixels go in by plain sequential writes, not through its
    # memory map: every page written through a shared mapping counts in the process's resident
    # set (3 GB at the paper scale), pages written by write() only in the page cache.
    with atomic_path(star) as tmp_star, atomic_path(stack) as tmp_stack:
        with mrcfile.new_mmap(tmp_stack, shape=(n_images, box, box), mrc_mode=mrc_mode,
                              overwrite=True) as mrc, open(tmp_stack, "r+b") as fh:
            mrc.set_image_stack()
            mrc.voxel_size = pixel_size
            dtype = mrc.data.dtype
            fh.seek(mrc.header.nbytes + mrc.extended_header.nbytes)
            pos, lo, hi, total, squares = 0, np.inf, -np.inf, 0.0, 0.0
            for chunk in chunks:
                if pos + len(chunk) > n_images:
                    raise RuntimeError(f"{stack}: more than the {n_images} images announced")
                block = np.ascontiguousarray(chunk if mrc_mode == 2 else np.rint(chunk), dtype=dtype)
                fh.write(memoryview(block).cast("B"))
                pos += len(chunk)
                # Header statistics chunk by chunk: mrcfile's update_header_stats re-reads the
                # whole stack and makes a float copy of it (3.3 GB at the paper scale).
                flat = np.ascontiguousarray(block, dtype=np.float32).ravel()
                lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
                total += float(np.sum(flat, dtype=np.float64))
                squares += float(np.dot(flat, flat))        # float32 BLAS: ample for a header rms
                if progress is not None:
                    progress.update(len(chunk))
            if pos != n_images:
                raise RuntimeError(f"{stack}: wrote {pos} images, expected {n_images}")
            count = n_images * box * box
            mean = total / count
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = lo, hi, mean
            mrc.header.rms = np.sqrt(max(squares / count - mean * mean, 0.0))
        starfile.write({"optics": optics, "particles": particles}, tmp_star, overwrite=True)
    return star
