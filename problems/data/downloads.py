"""A registry of downloadable particle datasets (EMPIAR entries), fetched with pooch.

Each entry names a base URL, its particle file (STAR) relative to it, and
the sha256 of every file known in advance.  :func:`fetch_dataset` downloads
the particle file, reads the image stacks it names (``rlnImageName``) and
downloads those too, all into ``cache_dir() / "downloads" / <name>`` with
the same relative paths, so the STAR file's relative stack paths resolve.
A file whose hash is registered is checked (pooch raises on mismatch and
deletes the file; we re-raise as :class:`problems.data.io.DataError`); a file
without one is downloaded once, and its sha256 is recorded in
``hashes.json`` beside it and checked on every later fetch.

``http(s)://`` and ``ftp://`` URLs use pooch's downloaders; ``file://`` URLs
(tests, local mirrors) are copied.  Nothing is downloaded unless
:func:`fetch_dataset` is called; the test suite only uses local URLs.

Example (needs internet)::

    from problems.data.downloads import fetch_dataset
    star = fetch_dataset("empiar-10028")
    p = load_problem("star", path=star, scale="small")
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pooch
import starfile

from .cache import cache_dir
from .io import DataError, atomic_write_text


@dataclass(frozen=True)
class RemoteDataset:
    """One downloadable particle dataset.

    Attributes
    ----------
    name : str
        Registry key (also the cache folder name).
    base_url : str
        URL of the folder that holds ``particle_file`` (ends with ``/``).
    particle_file : str
        Path of the STAR file relative to ``base_url``.
    hashes : dict
        Relative path -> sha256 (hex) for the files known in advance.
    description, citation : str
    """

    name: str
    base_url: str
    particle_file: str
    hashes: dict = field(default_factory=dict)
    description: str = ""
    citation: str = ""


DATASETS: dict[str, RemoteDataset] = {
    "empiar-10028": RemoteDataset(
        "empiar-10028",
        "https://ftp.ebi.ac.uk/empiar/world_availability/10028/data/Particles/",
        "shiny_2sets.star",
        description="Plasmodium falciparum 80S ribosome bound to emetine, 105,247 particles of "
                    "360 px at 1.34 Å/px (about 51 GB); the RELION benchmark set",
        citation="Wong et al. (2014) eLife 3:e03080; EMPIAR-10028"),
}


def _file_downloader(url: str, output_file, pooch_obj, check_only: bool = False):
    """pooch-compatible downloader for ``file://`` URLs (a copy)."""
    source = Path(unquote(urlparse(url).path))
    if check_only:
        return source.exists()
    if not source.exists():
        raise FileNotFoundError(f"{url}: no such file")
    if isinstance(output_file, (str, os.PathLike)):
        shutil.copyfile(source, output_file)
    else:
        with open(source, "rb") as fh:
            shutil.copyfileobj(fh, output_file)


def _sha256(path: Path) -> str:
    return pooch.file_hash(str(path), alg="sha256")


def _retrieve(url: str, relpath: str, folder: Path, known: str | None, recorded: dict) -> Path:
    target = folder / relpath
    expected = known or recorded.get(relpath)
    downloader = _file_downloader if url.startswith("file://") else None
    try:
        path = Path(pooch.retrieve(url, known_hash=f"sha256:{expected}" if expected else None,
                                   fname=Path(relpath).name, path=target.parent,
                                   downloader=downloader, progressbar=False))
    except ValueError as exc:    # pooch's hash mismatch
        raise DataError(f"{url}: downloaded file does not match its registered sha256 ({exc})") from exc
    except Exception as exc:
        raise DataError(f"{url}: download failed ({type(exc).__name__}: {exc})") from exc
    if not expected:
        recorded[relpath] = _sha256(path)
    return path


def fetch_dataset(name: str, registry: dict[str, RemoteDataset] | None = None,
                  root: str | os.PathLike | None = None) -> Path:
    """Download a registered dataset (particle file + the stacks it names); returns the STAR path.

    Parameters
    ----------
    name : key of ``registry`` (default :data:`DATASETS`)
    registry : dict, optional
        A different registry (tests use one pointing at a local server).
    root : path, optional
        Download folder (default ``cache_dir() / "downloads"``).
    """
    registry = DATASETS if registry is None else registry
    if name not in registry:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(registry)}")
    entry = registry[name]
    folder = (Path(root) if root is not None else cache_dir() / "downloads") / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "hashes.json"
    recorded = json.loads(record_path.read_text()) if record_path.exists() else {}
    base = entry.base_url if entry.base_url.endswith("/") else entry.base_url + "/"
    star = _retrieve(base + entry.particle_file, entry.particle_file, folder,
                     entry.hashes.get(entry.particle_file), recorded)
    try:
        blocks = starfile.read(star, always_dict=True)
    except Exception as exc:
        raise DataError(f"{star}: cannot parse STAR file ({exc})") from exc
    particles = blocks.get("particles", next(iter(blocks.values())))
    if "rlnImageName" not in particles.columns:
        raise DataError(f"{star}: missing column rlnImageName")
    star_dir = Path(entry.particle_file).parent
    stacks = sorted({str(v).partition("@")[2] for v in particles["rlnImageName"]})
    for stack in stacks:
        rel = (star_dir / stack).as_posix()
        _retrieve(base + rel, rel, folder, entry.hashes.get(rel), recorded)
    atomic_write_text(record_path, json.dumps(recorded, indent=2, sort_keys=True))
    return star
