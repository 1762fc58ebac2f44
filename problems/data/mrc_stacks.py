"""MRC image stacks: headers checked once, images read by positioned reads.

A header that ``mrcfile`` refuses in strict mode but reads in permissive
mode (most often: no ``MAP `` identifier at byte 208, as older tools write
and RELION, cryodrgn and ``mrcfile``'s permissive mode accept) is read with
one :class:`DataWarning`; the size (``nx = ny`` = the box, ``nz`` images
present in the file) and the mode (a known data type) are still checked.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np

from .particles import DataError, DataWarning


def read_header(path: Path, source: Path, field: str, warn: bool = True):
    """The header of ``path`` (strict, else permissive with a :class:`DataWarning`) and its dtype."""
    if not path.exists():
        raise DataError(f"{path}: image stack not found (named by {field} in {source})")
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            header = mrc.header.copy()
        return header, mrcfile.utils.data_dtype_from_header(header)
    except Exception as exc:  # mrcfile raises ValueError and others for corrupt headers
        strict = exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # mrcfile's own warnings; ours follows
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = None if mrc.header is None else mrc.header.copy()
        if header is None:
            raise ValueError("file too short for an MRC header")
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except Exception as exc:
        raise DataError(f"{path}: not a readable MRC stack (header: {strict}; {exc}; named by "
                        f"{field} in {source})") from exc
    if warn:
        warnings.warn(f"{path}: {strict}; read anyway as RELION and mrcfile's permissive mode do "
                      f"(size and mode checked)", DataWarning, stacklevel=3)
    return header, dtype


def header_nx(path: Path, source: Path, field: str) -> int:
    """The image width (header ``nx``) of a stack, to learn the box when the particle file omits it."""
    return int(read_header(path, source, field, warn=False)[0].nx)


class StackReader:
    """Positioned reads of images from one MRC stack, with its header checked once."""

    def __init__(self, path: Path, box: int, source: Path, field: str = "rlnImageName",
                 warn: bool = True):
        header, self.dtype = read_header(path, source, field, warn)
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        self.offset = 1024 + int(header.nsymbt)
        if nx != ny:
            raise DataError(f"{path}: images are {nx} x {ny} pixels (header nx, ny); cryoopt needs "
                            f"square images")
        if nx != box:
            raise DataError(f"{path}: images are {nx} px (header nx) but {source} says the box is {box}")
        if nz < 1:
            raise DataError(f"{path}: header nz = {nz}: the stack holds no image")
        self.path, self.box, self.count, self.field = path, box, nz, field
        self.image_bytes = box * box * self.dtype.itemsize
        available = (path.stat().st_size - self.offset) // self.image_bytes
        if available < nz:
            raise DataError(f"{path}: truncated: header nz says {nz} images, the file holds "
                            f"{available}")

    def read(self, first: int, count: int) -> np.ndarray:
        if first + count > self.count:
            raise DataError(f"{self.path}: image {first + count} requested ({self.field}) but the "
                            f"stack has {self.count} images")
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + first * self.image_bytes)
            data = np.fromfile(fh, dtype=self.dtype, count=count * self.box * self.box)
        return data.reshape(count, self.box, self.box)


def check_stacks(files: list[Path], slices: np.ndarray, box: int, source: Path, field: str) -> None:
    """Open every referenced stack's header once and check that the indices exist.

    Catches a missing stack, a corrupt or truncated header, a wrong or
    non-square box, and an image count that does not cover the particle file's
    indices, before any pixel is read.  A header read permissively warns once
    per stack, here.
    """
    last: dict[Path, int] = {}
    for path, idx in zip(files, slices):
        if idx > last.get(path, -1):
            last[path] = int(idx)
    for path, top in last.items():
        reader = StackReader(path, box, source, field)
        if top >= reader.count:
            raise DataError(f"{source}: {field} refers to image {top + 1} of {path}, which holds "
                            f"only {reader.count} images (header nz)")
