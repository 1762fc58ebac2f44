"""What every particle-file reader shares: the error type, the stack, one path rule, field checks.

:func:`resolve_stack` is the one rule by which STAR (:mod:`problems.data.star_files`)
and cryoSPARC (:mod:`problems.data.cryosparc`) files locate the image stacks
they name; :func:`numeric` is the one check of a numeric column, so every bad
value raises one :class:`DataError` naming the file, the particle (1-based
row) and the field; :func:`unique_images` drops particles that repeat an
image (same stack, same index), so no held-out image has a copy in training;
:func:`warn_data` is the one way a reader says what it read but does not
model (a :class:`DataWarning` attributed to the caller's line).
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.ctf import CTFParams


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent (the message names file and field)."""


class DataWarning(UserWarning):
    """A data file is unusual but readable (e.g. an MRC header without its ``MAP`` identifier)."""


_PACKAGE = str(Path(__file__).resolve().parents[1])      # problems/


def warn_data(message: str) -> None:
    """Issue a :class:`DataWarning` attributed to the first caller outside ``problems/``.

    The warning then points at the user's line that loaded the data (their
    script, notebook cell or command), not at the reader's own source line;
    the message itself names the data file.  (``skip_file_prefixes`` does
    this from Python 3.12; this walks the frames for 3.11.)
    """
    level, frame = 2, sys._getframe(1)          # stacklevel 2: warn_data's caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, DataWarning, stacklevel=level)


@dataclass
class ParticleStack:
    """Particles read from a STAR or ``.cs`` file; pixel units throughout.

    Attributes
    ----------
    star_path : Path
        The particle file (STAR or ``.cs``).
    box_size : int
    pixel_size : float
        Å per pixel (kept only to write files back and to label resolutions).
    ctf : CTFParams
        Per-particle CTF (voltage, Cs and amplitude contrast per particle when
        optics groups differ).
    rotations : ndarray or None, shape (n, 3, 3)
        Poses from the file (RELION's matrix convention), when present.
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
    _rows: np.ndarray | None = None     # the particle file's row of each particle (after de-duplication)

    def __len__(self) -> int:
        return len(self._files)

    def iter_chunks(self, chunk: int = 1000):
        """Yield ``(start, images)`` with images float32 of shape (m, N, N).

        Stacks are read with plain positioned reads, one run of consecutive
        images at a time, so memory stays at one chunk however large the
        stack is (a memory map would count every page touched as resident).
        """
        readers: dict = {}
        try:
            yield from self._chunks(chunk, readers)
        finally:                                    # compressed stacks hold an open stream
            for reader in readers.values():
                reader.close()

    def _chunks(self, chunk: int, readers: dict):
        from .mrc_stacks import StackReader, named_by

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
                with named_by(self.star_path, self._field,
                              row if self._rows is None else int(self._rows[row])):
                    if path not in readers:
                        readers[path] = StackReader(path, self.box_size, self.star_path,
                                                    self._field, warn=False)
                    out[row - start:row - start + run] = readers[path].read(first, run)
                row += run
            finite = np.isfinite(out).all(axis=(1, 2))
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                row = bad if self._rows is None else int(self._rows[bad])
                raise DataError(f"{self._files[bad]}: image {self._slices[bad] + 1} contains "
                                f"NaN or infinite pixels (particle {row + 1} of {self.star_path}, "
                                f"{self._field})")
            yield start, out


def unique_images(stack: ParticleStack) -> ParticleStack:
    """``stack`` without particles that repeat an earlier particle's image (same stack, same index).

    Symmetry expansion (``relion_particle_symmetry_expand``), joined STAR
    files and re-imported ``.cs`` files list one image several times, often
    with different poses.  The objective marginalises the pose, so a copy
    adds no information, and a held-out image with a copy in the training
    set would make the test NLL a training NLL.  The first occurrence of
    each image is kept (with its CTF and pose) and one :class:`DataWarning`
    gives the count and the first repeat.
    """
    ids = {path: i for i, path in enumerate(dict.fromkeys(stack._files))}
    keys = pd.DataFrame({"file": [ids[f] for f in stack._files], "index": stack._slices})
    repeat = keys.duplicated().to_numpy()
    if not repeat.any():
        return stack
    row = int(np.flatnonzero(repeat)[0])
    first = int(np.flatnonzero((keys["file"] == keys["file"][row]).to_numpy()
                               & (stack._slices == stack._slices[row]))[0])
    warn_data(f"{stack.star_path}: {int(repeat.sum())} of {len(stack)} particles repeat an earlier "
              f"particle's image (same stack and index, as symmetry expansion or joined files write "
              f"them; e.g. particle {row + 1} is particle {first + 1}'s image "
              f"{stack._slices[row] + 1} of {stack._files[row].name}); kept the first of each, so "
              f"that no held-out image has a copy among the training images")
    keep = np.flatnonzero(~repeat)
    pick = lambda a: None if a is None else a[keep]  # noqa: E731
    return replace(stack, ctf=stack.ctf.subset(keep), rotations=pick(stack.rotations),
                   shifts=pick(stack.shifts), _files=[stack._files[i] for i in keep],
                   _slices=stack._slices[keep], _rows=keep)


def numeric(values, source: Path, field: str, *, positive: bool = False,
            unit_interval: bool = False, rows: str = "particle") -> np.ndarray:
    """``values`` as float64, or one :class:`DataError` naming file, row and field.

    Every value must be a finite number; ``positive`` also requires ``> 0``
    (pixel size, voltage) and ``unit_interval`` ``0 <= v <= 1`` (amplitude
    contrast, as RELION's ``CTF::initialise`` requires).  The message names
    the first bad row (1-based) and how many rows are bad.
    """
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "biuf":                    # already numeric (the common case): no parsing
        raw = arr.ravel()
        num = raw.astype(np.float64)
    else:                                           # text: anything unparsable becomes NaN
        raw = arr.astype(object).ravel()
        num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    bad, need = ~np.isfinite(num), "a finite number"
    with np.errstate(invalid="ignore"):
        if positive:
            bad |= ~(num > 0)
            need = "a number > 0"
        if unit_interval:
            bad |= ~((num >= 0) & (num <= 1))
            need = "a number in [0, 1]"
    if bad.any():
        first, count = int(np.flatnonzero(bad)[0]), int(bad.sum())
        more = f" ({count} {rows}s are bad)" if count > 1 else ""
        shown = raw[first].item() if isinstance(raw[first], np.generic) else raw[first]
        raise DataError(f"{source}: {rows} {first + 1}: {field} = {shown!r} is not "
                        f"{need}{more}")
    return num


def shared_or_per_particle(values: np.ndarray):
    """One float when every particle has the same value (the common case), else the array."""
    return float(values[0]) if np.all(values == values[0]) else values


def resolve_stack(name: str, source: Path, field: str, datadir: str | os.PathLike | None = None) -> Path:
    """Locate the image stack ``name`` written in particle file ``source``: the one rule.

    Tried in order, the first existing path wins:

    1. ``datadir / name`` then ``datadir / basename(name)``, when ``datadir`` is given;
    2. ``name`` itself when absolute;
    3. ``d / name`` for ``d`` = the particle file's folder and each of its
       parents: RELION writes paths relative to the project directory it
       runs in (``Refine3D/job012/run_data.star`` names
       ``Extract/job007/...``), cryoSPARC ``blob/path`` relative to its
       project directory (``J5/extract/...``), and a plain STAR file names
       stacks beside it;
    4. the file name beside the particle file (cryodrgn's fallback, for a
       stack copied next to its STAR file).

    Raises
    ------
    DataError
        Naming the stack, the field and the particle file, when none exists.
    """
    rel = Path(name)
    base = Path(rel.name)
    candidates = []
    if datadir is not None:
        candidates += [Path(datadir) / rel, Path(datadir) / base]
    if rel.is_absolute():
        candidates.append(rel)
    else:
        candidates += [d / rel for d in (source.parent, *source.parent.resolve().parents)]
    candidates.append(source.parent / base)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    where = f"; looked in datadir {datadir}" if datadir is not None else ""
    raise DataError(f"{name}: image stack not found (named by {field} in {source}; tried relative "
                    f"to {source.parent} and its parents, and beside it{where})")
