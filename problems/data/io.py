"""File boundary: RELION STAR / cryoSPARC .cs + MRC stacks in, pixel units out.

The only module (with :mod:`problems.data.units`) where Ångström appear.  Reads
RELION 3.1+ STAR files (``optics`` + ``particles`` blocks), 3.0 files (one
block, optics columns per particle, pixel size from ``rlnImagePixelSize`` or
``rlnDetectorPixelSize`` / ``rlnMagnification``) and cryoSPARC ``.cs`` files
(a numpy structured array; see :func:`read_cryosparc`).  Image stacks are
read by positioned reads, so a stack larger than memory is read chunk by
chunk.

Bad input (a missing stack, an image index beyond a stack's end, a truncated
or corrupt MRC, a missing CTF column, non-square images, NaN pixels) raises
one :class:`DataError` whose message names the file and the field; headers
and index ranges are checked when the particle file is opened, pixels when
they are read.  Nothing here writes except :func:`write_mrc` and
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
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from ..model.ctf import CTFParams
from ..model.poses import euler_to_matrix
from .units import ctf_from_microscope


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent (the message names file and field)."""


@dataclass
class ParticleStack:
    """Particles read from a STAR file; pixel units throughout.

    Attributes
    ----------
    star_path : Path
    box_size : int
    pixel_size : float
        Å per pixel (kept only to write files back and to label resolutions).
    ctf : CTFParams
    rotations : ndarray or None, shape (n, 3, 3)
        Poses from the file, when present.
    shifts : ndarray or None, shape (n, 2)
        Image shifts (pixels) from the file, when present.
    """

    star_path: Path
    box_size: int
    pixel_size: float
    ctf: CTFParams
    rotations: np.ndarray | None
    shifts: np.ndarray | None
    _files: list[Path]
    _slices: np.ndarray
    _field: str = "rlnImageName"

    def __len__(self) -> int:
        return len(self._files)

    def iter_chunks(self, chunk: int = 1000):
        """Yield ``(start, images)`` with images float32 of shape (m, N, N).

        Stacks are read with plain positioned reads, one run of consecutive
        images at a time, so memory stays at one chunk however large the
        stack is (a memory map would count every page touched as resident).
        """
        readers: dict[Path, _StackReader] = {}
        for start in range(0, len(self), chunk):
            stop = min(start + chunk, len(self))
            out = np.empty((stop - start, self.box_size, self.box_size), dtype=np.float32)
            row = start
            while row < stop:
                path, first = self._files[row], self._slices[row]
                run = 1
                while (row + run < stop and self._files[row + run] == path
                       and self._slices[row + run] == first + run):
                    run += 1
                if path not in readers:
                    readers[path] = _StackReader(path, self.box_size, self.star_path, self._field)
                out[row - start:row - start + run] = readers[path].read(first, run)
                row += run
            finite = np.isfinite(out).all(axis=(1, 2))
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                raise DataError(f"{self._files[bad]}: image {self._slices[bad] + 1} contains "
                                f"NaN or infinite pixels (particle {bad + 1} of {self.star_path}, "
                                f"{self._field})")
            yield start, out


class _StackReader:
    """Positioned reads of images from one MRC stack, with its header checked once."""

    def __init__(self, path: Path, box: int, star: Path, field: str = "rlnImageName"):
        if not path.exists():
            raise DataError(f"{path}: image stack not found (named by {field} in {star})")
        try:
            with mrcfile.open(path, header_only=True, permissive=False) as mrc:
                header = mrc.header
                self.dtype = mrcfile.utils.data_dtype_from_header(header)
                nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
                self.offset = 1024 + int(header.nsymbt)
        except Exception as exc:  # mrcfile raises ValueError and others for corrupt headers
            raise DataError(f"{path}: not a readable MRC stack (header: {exc}; named by {field} "
                            f"in {star})") from exc
        if nx != ny:
            raise DataError(f"{path}: images are {nx} x {ny} pixels (header nx, ny); cryoopt needs "
                            f"square images")
        if nx != box:
            raise DataError(f"{path}: images are {nx} px (header nx) but {star} says the box is {box}")
        self.path, self.box, self.count = path, box, nz
        self.image_bytes = box * box * self.dtype.itemsize
        available = (path.stat().st_size - self.offset) // self.image_bytes
        if available < nz:
            raise DataError(f"{path}: truncated: header nz says {nz} images, the file holds "
                            f"{available}")

    def read(self, first: int, count: int) -> np.ndarray:
        if first + count > self.count:
            raise DataError(f"{self.path}: image {first + count} requested (rlnImageName) but the "
                            f"stack has {self.count} images")
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + first * self.image_bytes)
            data = np.fromfile(fh, dtype=self.dtype, count=count * self.box * self.box)
        return data.reshape(count, self.box, self.box)


def _column(df: pd.DataFrame, name: str, star: Path, default=None):
    if name in df.columns:
        return df[name].to_numpy()
    if default is not None:
        return np.full(len(df), default, dtype=float)
    raise DataError(f"{star}: missing column {name}")


def read_particle_star(star_path: str | os.PathLike) -> ParticleStack:
    """Read a RELION STAR file and locate its image stacks (paths relative to the STAR file)."""
    star = Path(star_path)
    if not star.exists():
        raise DataError(f"{star}: STAR file not found")
    try:
        blocks = starfile.read(star, always_dict=True)
    except Exception as exc:
        raise DataError(f"{star}: cannot parse STAR file ({exc})") from exc
    particles = blocks.get("particles")
    if particles is None:
        if len(blocks) != 1:
            raise DataError(f"{star}: no data_particles block")
        particles = next(iter(blocks.values()))
    optics = blocks.get("optics")
    if optics is not None and "rlnOpticsGroup" in particles.columns:
        particles = particles.merge(optics, on="rlnOpticsGroup", how="left", suffixes=("", "_optics"))
    if len(particles) == 0:
        raise DataError(f"{star}: no particles")
    pixel = _column(particles, "rlnImagePixelSize", star, default=np.nan)
    if np.isnan(pixel).any() and "rlnDetectorPixelSize" in particles.columns:
        pixel = _column(particles, "rlnDetectorPixelSize", star) * 1e4 / _column(
            particles, "rlnMagnification", star)
    if np.isnan(pixel).any():
        raise DataError(f"{star}: missing column rlnImagePixelSize")
    if not np.allclose(pixel, pixel[0]):
        raise DataError(f"{star}: rlnImagePixelSize differs between particles (optics groups); "
                        f"cryoopt needs one pixel size per stack")
    names = _column(particles, "rlnImageName", star)
    slices, files = [], []
    for name in names:
        idx, _, fname = str(name).partition("@")
        if not fname or not idx.strip().isdigit() or int(idx) < 1:
            raise DataError(f"{star}: rlnImageName {name!r} is not of the form N@stack.mrcs (N >= 1)")
        slices.append(int(idx) - 1)
        files.append((star.parent / fname).resolve())
    box = int(_column(particles, "rlnImageSize", star, default=0)[0])
    if box == 0:
        box = _open_stack_box(files[0], star)
    slices = np.asarray(slices)
    _check_stacks(files, slices, box, star, "rlnImageName")
    apix = float(pixel[0])
    for name in _CTF_COLUMNS:
        _column(particles, name, star)          # a missing CTF column fails here, by name
    ctf = ctf_from_microscope(
        pixel_size=apix,
        defocus_u_angstrom=_column(particles, "rlnDefocusU", star),
        defocus_v_angstrom=_column(particles, "rlnDefocusV", star),
        astigmatism_angle_deg=_column(particles, "rlnDefocusAngle", star),
        voltage_kv=float(_column(particles, "rlnVoltage", star)[0]),
        cs_mm=float(_column(particles, "rlnSphericalAberration", star)[0]),
        amplitude_contrast=float(_column(particles, "rlnAmplitudeContrast", star)[0]),
        bfactor_angstrom2=_column(particles, "rlnCtfBfactor", star, default=0.0),
        phase_shift_deg=_column(particles, "rlnPhaseShift", star, default=0.0),
    )
    _check_ctf_finite(ctf, star)
    rotations = shifts = None
    if {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(particles.columns):
        rotations = euler_to_matrix(*(np.deg2rad(particles[c].to_numpy(float))
                                      for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    if {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(particles.columns):
        shifts = -np.stack([particles["rlnOriginXAngst"].to_numpy(float),
                            particles["rlnOriginYAngst"].to_numpy(float)], axis=1) / apix
    elif {"rlnOriginX", "rlnOriginY"} <= set(particles.columns):       # RELION 3.0: pixels
        shifts = -np.stack([particles["rlnOriginX"].to_numpy(float),
                            particles["rlnOriginY"].to_numpy(float)], axis=1)
    return ParticleStack(star, box, apix, ctf, rotations, shifts, files, slices)


def _open_stack_box(path: Path, star: Path, field: str = "rlnImageName") -> int:
    return _StackReader(path, _header_nx(path, star, field), star, field).box


def _header_nx(path: Path, star: Path, field: str) -> int:
    if not path.exists():
        raise DataError(f"{path}: image stack not found (named by {field} in {star})")
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            return int(mrc.header.nx)
    except Exception as exc:
        raise DataError(f"{path}: not a readable MRC stack (header: {exc}; named by {field} "
                        f"in {star})") from exc


# Columns without which the CTF cannot be evaluated (B-factor and phase shift default to 0).
_CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
                "rlnSphericalAberration", "rlnAmplitudeContrast")


def _check_stacks(files: list[Path], slices: np.ndarray, box: int, source: Path, field: str) -> None:
    """Open every referenced stack's header once and check that the indices exist.

    Catches a missing stack, a corrupt or truncated header, a wrong or
    non-square box, and an image count that does not cover the particle file's
    indices, before any pixel is read.
    """
    last: dict[Path, int] = {}
    for path, idx in zip(files, slices):
        if idx > last.get(path, -1):
            last[path] = int(idx)
    for path, top in last.items():
        reader = _StackReader(path, box, source, field)
        if top >= reader.count:
            raise DataError(f"{source}: {field} refers to image {top + 1} of {path}, which holds "
                            f"only {reader.count} images (header nz)")


def _check_ctf_finite(ctf: CTFParams, source: Path) -> None:
    for field in ("defocus_u", "defocus_v", "astigmatism_angle", "bfactor", "phase_shift"):
        if not np.isfinite(getattr(ctf, field)).all():
            raise DataError(f"{source}: CTF field {field} has NaN or infinite values")
    for field in ("wavelength", "spherical_aberration", "amplitude_contrast"):
        if not np.isfinite(getattr(ctf, field)):
            raise DataError(f"{source}: CTF field {field} is NaN or infinite")


def read_particles(path: str | os.PathLike, **kwargs) -> ParticleStack:
    """Read a particle file by its suffix: ``.star`` (RELION) or ``.cs`` (cryoSPARC)."""
    from .cryosparc import read_cryosparc

    path = Path(path)
    if path.suffix == ".cs":
        return read_cryosparc(path, **kwargs)
    if path.suffix == ".star":
        return read_particle_star(path)
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
    with atomic_path(star) as tmp_star, atomic_path(stack) as tmp_stack:
        with mrcfile.new_mmap(tmp_stack, shape=(n_images, box, box), mrc_mode=mrc_mode,
                              overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = pixel_size
            pos = 0
            for chunk in chunks:
                mrc.data[pos:pos + len(chunk)] = chunk if mrc_mode == 2 else np.rint(chunk)
                pos += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
            if pos != n_images:
                raise RuntimeError(f"{stack}: wrote {pos} images, expected {n_images}")
            mrc.update_header_stats()
        starfile.write({"optics": optics, "particles": particles}, tmp_star, overwrite=True)
    return star
