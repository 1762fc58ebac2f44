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

import numpy as np

from .ctf import CTFParams, evaluate_ctf
from .fourier import images_from_spectrum, oversampled_spectrum
from .projector import gather_points


def full_plane_frequencies(n: int) -> np.ndarray:
    """Integer (kx, ky) of the centred grid in [ky + N/2, kx + N/2] order, shape (N*N, 2)."""
    k = np.arange(n) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return np.stack([kx.ravel(), ky.ravel()], axis=1)


def clean_images(spectrum: np.ndarray, rotations: np.ndarray, shifts: np.ndarray,
                 ctf: CTFParams, chunk: int = 256) -> Iterator[np.ndarray]:
    """Noise-free images for each pose, yielded in chunks (float32, (n, N, N)).

    ``spectrum`` is :func:`problems.fourier.oversampled_spectrum` of the density.
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
