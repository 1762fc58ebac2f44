"""Generating, caching and loading particle datasets.

Generated data lives under the cache directory (``$CRYOOPT_CACHE``, else the
platform cache from ``pooch.os_cache("cryoopt")``), one folder per problem,
scale, seed and version, written as a RELION STAR file + MRC stack and read
back through the same loader that real data uses.  A ``manifest.json`` is
written last; a folder without it is regenerated.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from .ctf import CTFParams, evaluate_ctf
from .fourier import image_band_coefficients, oversampled_spectrum
from .grids import Band
from .io import read_mrc, read_particle_star, write_mrc, write_particles
from .phantoms import synthetic_phantom
from .registry import SyntheticSpec
from .simulate import noisy_images, scale_for_snr


def cache_dir() -> Path:
    """Root of generated data (``$CRYOOPT_CACHE`` or the platform cache)."""
    root = os.environ.get("CRYOOPT_CACHE")
    return Path(root) if root else Path(pooch.os_cache("cryoopt"))


def _spec_hash(spec_dict: dict, seed: int) -> str:
    text = json.dumps({"spec": spec_dict, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dataset_dir(spec: SyntheticSpec, seed: int) -> Path:
    return cache_dir() / f"{spec.name}-{spec.scale}-v{spec.version}-seed{seed}-{_spec_hash(spec.as_dict(), seed)}"


def _streams(seed: int, spec: SyntheticSpec) -> dict[str, np.random.Generator]:
    names = ("poses", "ctf", "noise", "split")
    children = np.random.SeedSequence([seed, spec.version, spec.box_size]).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children)}


def random_ctf(spec, rng: np.random.Generator, n: int) -> dict:
    """Astigmatic CTFs in microscope units: defocus U uniform, V = U - uniform(0, astig), angle, B."""
    du = rng.uniform(spec.defocus_min_angstrom, spec.defocus_max_angstrom, n)
    return {
        "defocus_u": du, "defocus_v": du - rng.uniform(0, spec.astigmatism_max_angstrom, n),
        "defocus_angle": rng.uniform(0, 180, n), "bfactor": rng.uniform(spec.bfactor_min, spec.bfactor_max, n),
        "voltage_kv": spec.voltage_kv, "cs_mm": spec.cs_mm, "amplitude_contrast": spec.amplitude_contrast,
    }


def ctf_from_physical(phys: dict, pixel_size: float) -> CTFParams:
    return CTFParams.from_physical(
        pixel_size=pixel_size, defocus_u_angstrom=phys["defocus_u"], defocus_v_angstrom=phys["defocus_v"],
        astigmatism_angle_deg=phys["defocus_angle"], voltage_kv=phys["voltage_kv"], cs_mm=phys["cs_mm"],
        amplitude_contrast=phys["amplitude_contrast"], bfactor_angstrom2=phys["bfactor"])


def simulate_stack(directory: Path, density: np.ndarray, rotations: np.ndarray, shifts: np.ndarray,
                   phys: dict, spec, noise_rng: np.random.Generator, progress: bool = True,
                   mrc_mode: int = 2) -> np.ndarray:
    """Scale ``density`` to ``spec.snr``, simulate its noisy images and write STAR + MRCS + ground truth.

    ``phys`` holds the CTF in microscope units (see :func:`random_ctf`);
    ``spec`` supplies ``box_size``, ``pixel_size``, ``snr``, ``sigma`` and
    names.  Returns the scaled density (also written as ``ground_truth.mrc``).
    """
    n, box, apix = rotations.shape[0], spec.box_size, spec.pixel_size
    ctf = ctf_from_physical(phys, apix)
    n_cal = min(n, 200)
    density = density * scale_for_snr(density, rotations[:n_cal], shifts[:n_cal], ctf.subset(slice(0, n_cal)),
                                       spec.snr, spec.sigma)
    spectrum = oversampled_spectrum(density)
    # RELION's matrix A is the transpose of scipy's intrinsic ZYZ rotation (see tests/reference.py).
    euler = np.rad2deg(Rotation.from_matrix(np.transpose(rotations, (0, 2, 1))).as_euler("ZYZ"))
    directory.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=n, desc=f"simulating {spec.name}-{spec.scale}", unit="img", disable=not progress)
    with bar:
        write_particles(directory, noisy_images(spectrum, rotations, shifts, ctf, spec.sigma, noise_rng),
                        n, box, apix, phys, euler, shifts, progress=bar, mrc_mode=mrc_mode)
    write_mrc(directory / "ground_truth.mrc", density, apix)
    return density


def generate_synthetic(spec: SyntheticSpec, seed: int, directory: Path, progress: bool = True) -> None:
    """Simulate the dataset of ``spec`` into ``directory`` (deterministic from ``seed``)."""
    rng = _streams(seed, spec)
    n = spec.n_images
    rotations = Rotation.random(n, random_state=rng["poses"]).as_matrix()     # uniform on SO(3)
    shifts = np.zeros((n, 2))
    if spec.shift_extent > 0:
        shifts = np.clip(rng["poses"].normal(0, spec.shift_sigma, (n, 2)), -spec.shift_extent, spec.shift_extent)
    phys = random_ctf(spec, rng["ctf"], n)
    simulate_stack(directory, synthetic_phantom(spec.box_size), rotations, shifts, phys, spec, rng["noise"], progress)
    split = rng["split"].permutation(n)
    np.save(directory / "test_indices.npy", np.sort(split[:spec.n_test]))


def ensure_dataset(directory: Path, generate) -> Path:
    """``directory``, generated first by ``generate(tmp) -> manifest dict`` if it is incomplete.

    Generation happens in a ``.partial`` sibling that is renamed into place
    after its ``manifest.json`` (written last) exists, so an interrupted
    generation is redone, never half-used.
    """
    if not (directory / "manifest.json").exists():
        if directory.exists():
            shutil.rmtree(directory)
        tmp = directory.with_name(directory.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        manifest = generate(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, directory)
    return directory


def ensure_synthetic(spec: SyntheticSpec, seed: int, progress: bool = True) -> Path:
    """Path of the dataset folder, generating it first if it is missing or incomplete."""
    def generate(tmp: Path) -> dict:
        generate_synthetic(spec, seed, tmp, progress=progress)
        return {"spec": spec.as_dict(), "seed": seed}

    return ensure_dataset(dataset_dir(spec, seed), generate)


@dataclass
class BandData:
    """Band coefficients (n, D) complex64 and CTF values (n, D) float32 of a stack."""

    images: np.ndarray
    ctf: np.ndarray
    pixel_size: float
    box_size: int


def load_band_data(star_path: Path, band: Band, progress: bool = True) -> BandData:
    """Read a particle stack and keep only what the objective needs: its band."""
    stack = read_particle_star(star_path)
    n = len(stack)
    images = np.empty((n, band.size), dtype=np.complex64)
    bar = tqdm(total=n, desc=f"reading {Path(star_path).name}", unit="img", disable=not progress)
    with bar:
        for start, chunk in stack.iter_chunks():
            images[start:start + len(chunk)] = image_band_coefficients(chunk, band.k)
            bar.update(len(chunk))
    ctf = evaluate_ctf(stack.ctf, band.k / stack.box_size).astype(np.float32)
    return BandData(images, ctf, stack.pixel_size, stack.box_size)


def load_ground_truth(directory: Path) -> np.ndarray:
    return read_mrc(directory / "ground_truth.mrc")[0]
