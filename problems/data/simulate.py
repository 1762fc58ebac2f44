"""Simulated particle images from a density (paper Eq. 1).

``image = S_t C_theta P_R V + noise``, evaluated on the image's full
Fourier grid: the central slice of the 2x oversampled spectrum (trilinear,
the same interpolation the objective defines) at every frequency with
``|k| <= N/2 - 1`` (zero beyond), times the CTF and the shift's phase ramp,
back to real space, plus white Gaussian noise of standard deviation
``sigma`` per pixel.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from ..model.ctf import CTFParams, evaluate_ctf
from ..model.fourier import images_from_spectrum, oversampled_spectrum
from ..model.projector import gather_points
from .io import write_mrc, write_particles
from .units import ctf_from_microscope


def full_plane_frequencies(n: int) -> np.ndarray:
    """Integer (kx, ky) of the centred grid in [ky + N/2, kx + N/2] order, shape (N*N, 2)."""
    k = np.arange(n) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return np.stack([kx.ravel(), ky.ravel()], axis=1)


def clean_images(spectrum: np.ndarray, rotations: np.ndarray, shifts: np.ndarray,
                 ctf: CTFParams, chunk: int = 256) -> Iterator[np.ndarray]:
    """Noise-free images for each pose, yielded in chunks (float32, (n, N, N)).

    ``spectrum`` is :func:`problems.model.fourier.oversampled_spectrum` of the density.
    """
    n = spectrum.shape[0] // 2
    k = full_plane_frequencies(n).astype(np.float64)
    inside = (k**2).sum(1) <= (n / 2 - 1) ** 2
    k_in = k[inside]
    for start in range(0, rotations.shape[0], chunk):
        stop = min(start + chunk, rotations.shape[0])
        a = rotations[start:stop]
        q = k_in[None, :, 0:1] * a[:, None, 0, :] + k_in[None, :, 1:2] * a[:, None, 1, :]
        sl = gather_points(spectrum, float(n), (2 * q).astype(np.float32))
        c = evaluate_ctf(ctf.subset(slice(start, stop)), k_in / n)
        ramp = np.exp(-2j * np.pi * (shifts[start:stop] @ k_in.T) / n)
        spec = np.zeros((stop - start, n * n), dtype=np.complex128)
        spec[:, inside] = c * ramp * sl
        yield images_from_spectrum(spec.reshape(-1, n, n)).astype(np.float32)


def noisy_images(spectrum, rotations, shifts, ctf, sigma: float, rng: np.random.Generator,
                 chunk: int = 256) -> Iterator[np.ndarray]:
    """Clean images plus white Gaussian noise of standard deviation ``sigma`` per pixel."""
    for img in clean_images(spectrum, rotations, shifts, ctf, chunk):
        yield img + sigma * rng.standard_normal(img.shape, dtype=np.float32)


def scale_for_snr(volume: np.ndarray, rotations, shifts, ctf: CTFParams, snr: float,
                  sigma: float) -> float:
    """Factor ``a`` such that images of ``a * volume`` have mean pixel power ``snr * sigma^2``."""
    spectrum = oversampled_spectrum(volume)
    power = np.mean([np.mean(img.astype(np.float64) ** 2)
                     for img in clean_images(spectrum, rotations, shifts, ctf)])
    return float(np.sqrt(snr * sigma**2 / power))


def random_ctf(spec, rng: np.random.Generator, n: int) -> dict:
    """Astigmatic CTFs in microscope units: defocus U uniform, V = U - uniform(0, astig), angle, B."""
    du = rng.uniform(spec.defocus_min_angstrom, spec.defocus_max_angstrom, n)
    return {
        "defocus_u": du, "defocus_v": du - rng.uniform(0, spec.astigmatism_max_angstrom, n),
        "defocus_angle": rng.uniform(0, 180, n), "bfactor": rng.uniform(spec.bfactor_min, spec.bfactor_max, n),
        "voltage_kv": spec.voltage_kv, "cs_mm": spec.cs_mm, "amplitude_contrast": spec.amplitude_contrast,
    }


def ctf_from_physical(phys: dict, pixel_size: float) -> CTFParams:
    return ctf_from_microscope(
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
