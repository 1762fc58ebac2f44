"""MRC image stacks: headers checked once, images read by positioned reads.

A header that ``mrcfile`` refuses in strict mode but reads in permissive
mode (most often: no ``MAP `` identifier at byte 208, as older tools write
and RELION, cryodrgn and ``mrcfile``'s permissive mode accept) is read with
one :class:`DataWarning`; the size and the mode are still checked.

What the header must agree with (else one :class:`DataError`):

* the mode is a real pixel type: 0 (int8), 1 (int16), 2 (float32),
  6 (uint16) or 12 (float16); complex modes 3 and 4 are refused (dropping
  their imaginary parts would change the images), and so is packed 4-bit
  mode 101;
* the file size is exactly ``1024 + nsymbt + nx * ny * nz * bytes per
  pixel`` (header, extended header, data): shorter is "truncated", longer
  means the mode or dimensions do not describe the data;
* ``nx = ny`` = the particle file's box, and ``nz`` covers its indices.

gzip and bzip2 files (as ``mrcfile.new(..., compression="gzip")`` writes
them) are recognised by their magic bytes and read through the same
decompression ``mrcfile`` uses (:mod:`gzip`, :mod:`bz2`), one sequential
stream per stack; their size can only be checked as they are read, so a
short or over-long compressed file is refused at that point.
"""
from __future__ import annotations

import bz2
import gzip
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import mrcfile
import numpy as np

from .particles import DataError, warn_data

# MRC modes with real pixels (mrcfile's table); 3 and 4 are complex, 101 is packed 4-bit.
REAL_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
COMPRESSION = {b"\x1f\x8b": ("gzip", gzip.open), b"BZh": ("bzip2", bz2.open)}


def compression(path: Path):
    """``(name, opener)`` of a gzip or bzip2 file (by its magic bytes), else ``None``."""
    with open(path, "rb") as fh:
        head = fh.read(3)
    for magic, found in COMPRESSION.items():
        if head.startswith(magic):
            return found
    return None


@contextmanager
def named_by(source: Path, field: str, row: int):
    """Add which particle of which file names the stack to a stack's :class:`DataError`."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{exc} (named by {field} of particle {row + 1} in {source})") from exc


def read_header(path: Path, warn: bool = True):
    """The header of ``path`` (strict, else permissive with a :class:`DataWarning`) and its dtype."""
    if not path.exists():
        raise DataError(f"{path}: image stack not found")
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
        reason = str(strict) if str(exc) == str(strict) else f"{strict}; {exc}"
        raise DataError(f"{path}: not a readable MRC stack (header: {reason})") from exc
    if warn:
        warn_data(f"{path}: {strict}; read anyway as RELION and mrcfile's permissive mode do "
                  f"(size and mode checked)")
    return header, dtype


def header_nx(path: Path) -> int:
    """The image width (header ``nx``) of a stack, to learn the box when the particle file omits it."""
    return int(read_header(path, warn=False)[0].nx)


class StackReader:
    """Positioned reads of images from one MRC stack, with its header checked once."""

    def __init__(self, path: Path, box: int, source: Path, field: str = "rlnImageName",
                 warn: bool = True):
        header, self.dtype = read_header(path, warn)
        nx, ny, nz, mode = int(header.nx), int(header.ny), int(header.nz), int(header.mode)
        if mode not in REAL_MODES:
            kind = "complex" if mode in (3, 4) else "packed 4-bit" if mode == 101 else "unknown"
            raise DataError(f"{path}: MRC mode {mode} ({kind} pixels): cryoopt reads real images, "
                            f"modes {sorted(REAL_MODES)}")
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
        self.expected = self.offset + nz * self.image_bytes
        self.layout = (f"1024-byte header + {self.offset - 1024}-byte extended header + nz {nz} x "
                       f"{nx} x {ny} pixels of mode {mode} ({REAL_MODES[mode]}) = {self.expected} "
                       f"bytes")
        self.compressed, self._stream = compression(path), None
        if self.compressed is None:
            self._check_size(path.stat().st_size)

    def _check_size(self, size: int, what: str = "the file has") -> None:
        if size < self.expected:
            available = max(size - self.offset, 0) // self.image_bytes
            raise DataError(f"{self.path}: truncated: header nz says {self.count} images, "
                            f"{what} {size} bytes, {available} whole images ({self.layout})")
        if size > self.expected:
            raise DataError(f"{self.path}: {what} {size} bytes, {size - self.expected} more than "
                            f"its header describes ({self.layout}): the header's mode or "
                            f"dimensions do not match the data")

    def read(self, first: int, count: int) -> np.ndarray:
        if first + count > self.count:
            raise DataError(f"{self.path}: image {first + count} requested ({self.field}) but the "
                            f"stack has {self.count} images")
        if self.compressed is not None:
            return self._read_compressed(first, count)
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + first * self.image_bytes)
            data = np.fromfile(fh, dtype=self.dtype, count=count * self.box * self.box)
        return data.reshape(count, self.box, self.box)

    def _read_compressed(self, first: int, count: int) -> np.ndarray:
        """Read from one decompressing stream (forward seeks decompress, not re-read the file)."""
        name, opener = self.compressed
        if self._stream is None:
            self._stream = opener(self.path, "rb")
        start = self.offset + first * self.image_bytes
        try:
            self._stream.seek(start)
            raw = self._stream.read(count * self.image_bytes)
            if len(raw) < count * self.image_bytes:
                self._check_size(start + len(raw), f"{name}-decompressed it holds only")
            if first + count == self.count and self._stream.read(1):
                self._stream.seek(0, 2)             # to the end, to say by how much
                self._check_size(self._stream.tell(), f"{name}-decompressed it has")
        except (EOFError, OSError, ValueError, zlib.error) as exc:   # a cut or corrupt stream
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{self.path}: {name} stream is truncated or corrupt ({exc}; reading "
                            f"images {first + 1}-{first + count})") from exc
        return np.frombuffer(raw, dtype=self.dtype).reshape(count, self.box, self.box)

    def close(self) -> None:
        """Close the decompressing stream, if one is open (plain stacks hold no open file)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def check_stacks(files: list[Path], slices: np.ndarray, box: int, source: Path, field: str,
                 whole: np.ndarray | None = None) -> None:
    """Open every referenced stack's header once and check that the indices exist.

    Catches a missing stack, a corrupt or truncated header, a wrong or
    non-square box, and an image count that does not cover the particle file's
    indices, before any pixel is read.  ``whole`` marks the particles named
    by a bare file name (no ``N@``): RELION reads such a name as the whole
    file, one image, so the file must hold exactly one 2D image.  A header
    read permissively warns once per stack, here.
    """
    first: dict[Path, int] = {}                # first row naming each stack
    last: dict[Path, int] = {}                 # row naming each stack's highest index
    for row, path in enumerate(files):
        if path not in first:
            first[path] = last[path] = row
        elif slices[row] > slices[last[path]]:
            last[path] = row
    # first row naming each file without N@ (reversed, so the earliest row is the one kept)
    single = {} if whole is None else {files[i]: i for i in np.flatnonzero(whole)[::-1]}
    for path, row in first.items():
        with named_by(source, field, row):
            reader = StackReader(path, box, source, field)
        top = last[path]
        if slices[top] >= reader.count:
            raise DataError(f"{source}: particle {top + 1}: {field} refers to image "
                            f"{slices[top] + 1} of {path}, which holds only {reader.count} images "
                            f"(header nz)")
        if path in single and reader.count != 1:
            row = single[path]
            raise DataError(f"{source}: particle {row + 1}: {field} names {path.name} without N@, "
                            f"which RELION reads as the whole file, one 2D image, but it holds "
                            f"{reader.count} images or sections (header nz); write N@{path.name} "
                            f"to pick one")
