"""Simulated particle images (paper Eq. 1): ``image = S_t C_theta P_R V + noise``.

Two forward models:

* :func:`exact_images` (the datasets of the synthetic and realistic
  problems): the density is a Gaussian mixture
  (:class:`problems.data.gaussians.GaussianMixture`) and every image's
  spectrum is its exact central slice at the continuous pose, times the CTF
  and the shift's phase ramp, at every frequency with ``|k| <= N/2 - 1``
  (zero beyond), back to real space, plus white Gaussian noise of standard
  deviation ``sigma`` per pixel.  Nothing here uses the objective's
  interpolation, so the objective's model error is real and measured
  (:func:`problems.catalog.truth.truth_diagnostics`).  float32/complex64
  throughout; chunks of :data:`CHUNK` images run on a thread pool, one
  worker per available core (numpy, BLAS, numba and pocketfft release the
  GIL), each chunk's noise from its own generator spawned from the noise
  stream, and BLAS single-threaded inside the pool (``threadpoolctl``), so
  the bytes depend neither on the number of workers nor on the machine's
  core count.  (A multi-threaded BLAS splits the products differently per
  thread count and rounds 4% of the pixels 1 ulp differently; under load
  its threads, nested in the pool's, also ran the generation 3.5x slower.)
  With ``device`` an array-module device (``"cuda"``; ``"numpy"`` runs the
  same code on the CPU) the spectra, CTF products and inverse FFTs run
  there (:meth:`problems.data.gaussians.GaussianMixture.image_spectra_xp`),
  one chunk at a time, and the noise is added on the host from the same
  streams: the images equal the CPU path's to float32 rounding, the noise
  bytes are the same.
* :func:`clean_images`: the objective's own model (trilinear interpolation
  of the 2x oversampled spectrum), kept to cross-check conventions against
  RELION's projector (``tests/bench/experiments/test_relion.py``) and for SNR calibration of
  problems that simulate with the objective's model on purpose
  (refine-known-poses).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..model.ctf import CTFParams, evaluate_ctf
from ..model.devices import array_module, to_host
from ..model.fourier import images_from_spectrum, oversampled_spectrum
from ..model.projector import gather_points
from .gaussians import GaussianMixture
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


def scale_for_snr(volume: np.ndarray, rotations, shifts, ctf: CTFParams, snr: float,
                  sigma: float) -> float:
    """Factor ``a`` such that images of ``a * volume`` have mean pixel power ``snr * sigma^2``."""
    spectrum = oversampled_spectrum(volume)
    power = np.mean([np.mean(img.astype(np.float64) ** 2)
                     for img in clean_images(spectrum, rotations, shifts, ctf)])
    return float(np.sqrt(snr * sigma**2 / power))


def random_shifts(rng: np.random.Generator, n: int, sigma: float, extent: float) -> np.ndarray:
    """Shifts (n, 2) in pixels from ``N(0, sigma^2 I)`` truncated to the disc ``|s| <= extent``.

    Rejection sampling: draws outside the disc are redrawn (never clipped),
    so the shifts follow the prior the quadrature's shift weights use
    (:func:`problems.model.poses.make_quadrature`).  ``extent <= 0``: zeros.
    """
    if extent <= 0:
        return np.zeros((n, 2))
    if sigma <= 0:
        raise ValueError(f"shift sigma must be positive, got {sigma}")
    out = np.empty((0, 2))
    while out.shape[0] < n:
        draw = rng.normal(0.0, sigma, (2 * (n - out.shape[0]) + 16, 2))
        out = np.concatenate([out, draw[np.hypot(draw[:, 0], draw[:, 1]) <= extent]])
    return out[:n]


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


CHUNK = 256                       # images per work item; fixes the noise streams' layout


def ctf_half_plane(ctf: CTFParams, n: int) -> np.ndarray:
    """CTF of every image on the ``irfft2`` half grid, zero where ``|k| > N/2 - 1``; float32 (B, N, N/2+1).

    The same formula as :func:`problems.model.ctf.evaluate_ctf`, arranged for
    speed: the astigmatic defocus uses ``cos 2(alpha - alpha_ast) = cos 2alpha
    cos 2alpha_ast + sin 2alpha sin 2alpha_ast`` (no per-image trig of the
    angle) and everything is float32 (phase error ~1e-5 rad at 128 px).
    """
    ky = np.fft.fftfreq(n)[:, None]
    kx = (np.arange(n // 2 + 1) / n)[None, :]
    k2 = ky**2 + kx**2
    alpha = np.arctan2(ky, kx)
    mask = (k2 * n * n <= (n / 2 - 1) ** 2).astype(np.float32)
    c2a, s2a = np.cos(2 * alpha).astype(np.float32), np.sin(2 * alpha).astype(np.float32)
    k2 = k2.astype(np.float32)
    col = lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 1, 1)  # noqa: E731
    du, dv, ast = col(ctf.defocus_u), col(ctf.defocus_v), col(ctf.astigmatism_angle)
    mean, half = (0.5 * (du + dv)).astype(np.float32), (0.5 * (du - dv)).astype(np.float32)
    lam, cs = col(ctf.wavelength), col(ctf.spherical_aberration)     # scalars or per image
    defocus = mean + half * (c2a * np.cos(2 * ast).astype(np.float32) + s2a * np.sin(2 * ast).astype(np.float32))
    chi = (np.pi * lam).astype(np.float32) * defocus * k2 - (0.5 * np.pi * cs * lam**3).astype(np.float32) * k2**2
    chi += (np.arcsin(col(ctf.amplitude_contrast)) + col(ctf.phase_shift)).astype(np.float32)
    envelope = np.exp(col(-0.25 * np.asarray(ctf.bfactor, float)).astype(np.float32) * k2)
    envelope *= col(getattr(ctf, "scale", 1.0)).astype(np.float32)
    return envelope * np.sin(chi) * mask


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def exact_images(mixture: GaussianMixture, rotations: np.ndarray, shifts: np.ndarray, ctf: CTFParams,
                 n: int, sigma: float, noise_rng: np.random.Generator | None, workers: int | None = None,
                 device: str = "cpu") -> Iterator[np.ndarray]:
    """Images of ``mixture`` (clean if ``noise_rng`` is None), yielded in order in chunks of
    :data:`CHUNK`, float32 (b, N, N) (module docstring); ``workers`` defaults to
    :func:`available_cores`; ``device`` ``"cpu"`` (numba, thread pool) or an array-module device."""
    workers = available_cores() if workers is None else max(1, int(workers))
    total = rotations.shape[0]
    starts = list(range(0, total, CHUNK))
    rngs = noise_rng.spawn(len(starts)) if noise_rng is not None else None
    if device != "cpu":
        yield from _device_images(device, mixture, rotations, shifts, ctf, n, sigma, starts, rngs)
        return

    def work(i: int) -> np.ndarray:
        sl = slice(starts[i], min(starts[i] + CHUNK, total))
        spec = mixture.image_spectra(rotations[sl], shifts[sl], n)
        spec *= ctf_half_plane(ctf.subset(sl), n)
        img = scipy.fft.irfft2(spec, s=(n, n), workers=1, overwrite_x=True)
        img *= np.float32(n)                                   # unitary convention
        if rngs is not None:
            img += np.float32(sigma) * rngs[i].standard_normal(img.shape, dtype=np.float32)
        return img

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for i in range(len(starts)):
            pending.append(pool.submit(work, i))
            if len(pending) > workers:                         # bounded: memory stays O(workers chunks)
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _device_images(device: str, mixture: GaussianMixture, rotations, shifts, ctf: CTFParams, n: int,
                   sigma: float, starts: list[int], rngs) -> Iterator[np.ndarray]:
    """:func:`exact_images` on an array-module device, chunk by chunk (host float32 images)."""
    xp = array_module(device)
    if xp is np:
        fft = scipy.fft
    else:
        import cupyx.scipy.fft as fft
    for i, start in enumerate(starts):
        sl = slice(start, min(start + CHUNK, rotations.shape[0]))
        spec = mixture.image_spectra_xp(xp, rotations[sl], shifts[sl], n)
        spec *= xp.asarray(ctf_half_plane(ctf.subset(sl), n))
        img = to_host(fft.irfft2(spec, s=(n, n), overwrite_x=True)).astype(np.float32, copy=False)
        img *= np.float32(n)                                   # unitary convention
        if rngs is not None:
            img += np.float32(sigma) * rngs[i].standard_normal(img.shape, dtype=np.float32)
        yield img


def mixture_scale_for_snr(mixture: GaussianMixture, rotations, shifts, ctf: CTFParams, n: int,
                          snr: float, sigma: float, device: str = "cpu") -> float:
    """Factor ``a`` such that the clean images of ``a * mixture`` have mean pixel power ``snr * sigma^2``."""
    power = np.mean([np.mean(img.astype(np.float64) ** 2)
                     for img in exact_images(mixture, rotations, shifts, ctf, n, sigma, None, device=device)])
    return float(np.sqrt(snr * sigma**2 / power))


def simulate_stack(directory: Path, mixture: GaussianMixture, rotations: np.ndarray, shifts: np.ndarray,
                   phys: dict, spec, noise_rng: np.random.Generator, progress: bool = True,
                   mrc_mode: int = 2, workers: int | None = None, device: str = "cpu") -> GaussianMixture:
    """Scale ``mixture`` to ``spec.snr``, simulate its noisy images exactly and write the dataset.

    ``phys`` holds the CTF in microscope units (see :func:`random_ctf`);
    ``spec`` supplies ``box_size``, ``pixel_size``, ``snr``, ``sigma`` and
    names; ``device`` is where the images are computed (:func:`exact_images`).
    Writes ``particles.star`` + ``particles.mrcs`` (in chunks, never the
    whole stack in memory), ``ground_truth.mrc`` (the scaled mixture sampled
    on the grid) and ``ground_truth_mixture.npz`` (its components); returns
    the scaled mixture.
    """
    n, box, apix = rotations.shape[0], spec.box_size, spec.pixel_size
    ctf = ctf_from_physical(phys, apix)
    n_cal = min(n, 200)
    mixture = mixture.scaled(mixture_scale_for_snr(mixture, rotations[:n_cal], shifts[:n_cal],
                                                   ctf.subset(slice(0, n_cal)), box, spec.snr, spec.sigma,
                                                   device))
    # RELION's matrix A is the transpose of scipy's intrinsic ZYZ rotation (see tests/reference.py).
    euler = np.rad2deg(Rotation.from_matrix(np.transpose(rotations, (0, 2, 1))).as_euler("ZYZ"))
    directory.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=n, desc=f"simulating {spec.name}-{spec.scale}", unit="img", disable=not progress)
    with bar:
        write_particles(directory, exact_images(mixture, rotations, shifts, ctf, box, spec.sigma, noise_rng,
                                                workers, device), n, box, apix, phys, euler, shifts, progress=bar,
                        mrc_mode=mrc_mode)
    write_mrc(directory / "ground_truth.mrc", mixture.density(box), apix)
    save_mixture(directory / "ground_truth_mixture.npz", mixture)
    return mixture


def save_mixture(path: Path, mixture: GaussianMixture) -> None:
    np.savez(path, centres=mixture.centres, sigmas=mixture.sigmas, amplitudes=mixture.amplitudes)


def load_mixture(path: Path) -> GaussianMixture:
    with np.load(path) as f:
        return GaussianMixture(f["centres"], f["sigmas"], f["amplitudes"])
