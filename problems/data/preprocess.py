"""Preprocessing of a particle stack into the objective's band data.

Three fixed steps, applied chunk by chunk so a stack larger than memory
streams through:

1. **Fourier cropping** to a target box ``n <= N`` (:func:`fourier_crop`):
   keep the centred unitary DFT coefficients ``I(k)`` with
   ``-n/2 <= k_x, k_y < n/2`` and invert with the unitary transform of size
   ``n``.  Because both transforms are unitary (see :mod:`problems.model.fourier`),
   the kept coefficients are *unchanged*, white noise keeps its per-pixel
   standard deviation, and the pixel size grows by ``N / n``.  The CTF is the
   same physical function; in the new pixel units every length scales by
   ``N / n`` (:func:`rescale_ctf`).

2. **Noise normalisation** to ``sigma = 1`` (:func:`background_mask`,
   :func:`estimate_noise_sigma`).  The background is the set of pixels of the
   (cropped) image outside the circle of radius ``r_bg = f * n / 2``
   (``f = 0.9`` by default: the particle should lie inside, as for RELION's
   ``--bg_radius``).  With ``b_i`` the background pixels of image ``i``,
   ``mu_i`` their mean and ``P`` their number,

   .. math::

       \\hat\\sigma^2 = \\frac{1}{\\sum_i (P - 1)} \\sum_i \\sum_{p \\in b_i} (b_{ip} - \\mu_i)^2,

   pooled over the first ``n_estimate`` images (1000 by default): one
   ``sigma`` per stack, because the objective has one.  Each image becomes
   ``(img_i - mu_i) / sigma`` (RELION's normalisation with a pooled
   standard deviation); subtracting ``mu_i`` only changes the DC coefficient.

3. **Train/test split** (:func:`split_indices`): ``n_test`` held-out indices
   drawn without replacement by ``numpy.random.default_rng([seed, 0x7E57])``,
   sorted; the same seed gives the same split on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.fft
from tqdm.auto import tqdm

from ..model.ctf import CTFParams, evaluate_ctf
from .cache import BandData
from ..model.fourier import image_band_coefficients
from ..model.grids import Band
from .io import DataError, ParticleStack


def fourier_crop(images: np.ndarray, n_out: int) -> np.ndarray:
    """Crop images (m, N, N) to (m, n, n) in Fourier space, keeping coefficients unchanged.

    ``out = F_n^-1 [ I(k) for -n/2 <= k < n/2 ]`` with unitary centred DFTs of
    sizes ``N`` and ``n``; so :func:`problems.model.fourier.image_band_coefficients`
    of the output equals that of the input at every ``|k| < n/2``.  ``n`` must
    be even and at most ``N``.  The unpaired Nyquist row/column ``k = -n/2``
    is kept and the real part taken (the standard crop).
    """
    images = np.asarray(images)
    n_in = images.shape[-1]
    if n_out == n_in:
        return images.astype(np.float32, copy=False)
    if n_out > n_in or n_out % 2:
        raise ValueError(f"fourier_crop: target box {n_out} must be even and at most {n_in}")
    spec = np.fft.fftshift(scipy.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), workers=-1),
                           axes=(-2, -1)) / n_in
    lo = n_in // 2 - n_out // 2
    kept = spec[..., lo:lo + n_out, lo:lo + n_out]
    out = scipy.fft.ifft2(np.fft.ifftshift(kept, axes=(-2, -1)), workers=-1) * n_out
    return np.fft.fftshift(out.real, axes=(-2, -1)).astype(np.float32)


def rescale_ctf(ctf: CTFParams, factor: float) -> CTFParams:
    """The same physical CTF in pixels ``factor`` times larger (lengths / factor, B / factor^2)."""
    f = float(factor)
    return replace(ctf, defocus_u=ctf.defocus_u / f, defocus_v=ctf.defocus_v / f,
                   wavelength=ctf.wavelength / f, spherical_aberration=ctf.spherical_aberration / f,
                   bfactor=ctf.bfactor / f**2)


def background_mask(n: int, radius_fraction: float = 0.9) -> np.ndarray:
    """Boolean (n, n) mask of pixels farther than ``radius_fraction * n / 2`` from the centre ``n // 2``."""
    c = np.arange(n) - n // 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    mask = r2 > (radius_fraction * n / 2) ** 2
    if mask.sum() < 2:
        raise ValueError(f"background mask of a {n} px box at radius {radius_fraction} is empty")
    return mask


@dataclass
class NoiseAccumulator:
    """Running pooled background variance (see the module docstring)."""

    mask: np.ndarray
    sum_sq: float = 0.0
    dof: int = 0
    total_sq: float = 0.0       # the same over whole images, for the noise-free check
    total_dof: int = 0

    def background_means(self, images: np.ndarray) -> np.ndarray:
        return images[:, self.mask].astype(np.float64).mean(axis=1)

    def add(self, images: np.ndarray) -> None:
        bg = images[:, self.mask].astype(np.float64)
        self.sum_sq += float(((bg - bg.mean(axis=1, keepdims=True)) ** 2).sum())
        self.dof += bg.shape[0] * (bg.shape[1] - 1)
        flat = images.reshape(len(images), -1).astype(np.float64)
        self.total_sq += float(((flat - flat.mean(axis=1, keepdims=True)) ** 2).sum())
        self.total_dof += flat.shape[0] * (flat.shape[1] - 1)

    @property
    def sigma(self) -> float:
        return float(np.sqrt(self.sum_sq / self.dof)) if self.dof else float("nan")

    @property
    def sigma_total(self) -> float:
        return float(np.sqrt(self.total_sq / self.total_dof)) if self.total_dof else float("nan")


# Refuse a background whose sigma is below this fraction of the whole images' sigma.  Real
# micrographs are noise-dominated (pixel SNR ~0.01-0.1, so the ratio is ~0.95 or more); a
# noise-free simulation has only crop ringing in its background (ratio ~0.01).
NOISE_FREE_RATIO = 0.1


def estimate_noise_sigma(images: np.ndarray, radius_fraction: float = 0.9) -> float:
    """Pooled standard deviation of the background pixels of ``images`` (m, n, n)."""
    acc = NoiseAccumulator(background_mask(images.shape[-1], radius_fraction))
    acc.add(images)
    return acc.sigma


def split_indices(n_images: int, n_test: int, seed: int) -> np.ndarray:
    """Sorted held-out indices: ``n_test`` of ``range(n_images)``, fixed by ``seed``."""
    if not 0 < n_test < n_images:
        raise ValueError(f"cannot hold out {n_test} of {n_images} images")
    rng = np.random.default_rng([seed, 0x7E57])
    return np.sort(rng.choice(n_images, size=n_test, replace=False))


@dataclass
class Preprocessed:
    """Band data of a preprocessed stack and what was done to it."""

    data: BandData
    sigma_estimate: float       # background sigma before normalisation (cropped pixels)
    source_box: int
    source_pixel_size: float


def preprocess_stack(stack: ParticleStack, band: Band, box: int | None = None,
                     n_images: int | None = None, normalise: bool = True,
                     bg_radius: float = 0.9, n_estimate: int = 1000, chunk: int = 500,
                     progress: bool = True) -> Preprocessed:
    """Fourier-crop, normalise and reduce the first ``n_images`` of ``stack`` to band coefficients.

    Two passes when ``normalise``: the first estimates ``sigma`` from up to
    ``n_estimate`` images, the second computes every image's band
    coefficients, ``(F[crop(img)](k) - n mu_i [k = 0]) / sigma`` (the
    centred unitary DFT of a constant ``mu`` over ``n x n`` pixels is
    ``n mu`` at ``k = 0`` and zero elsewhere).

    Raises
    ------
    DataError
        When the band does not fit the box, or the background is constant or
        noise-free (its sigma below ``NOISE_FREE_RATIO`` of the images' sigma).
    """
    n_src = stack.box_size
    box = n_src if box is None else min(int(box), n_src)
    if box < n_src and box % 2:
        box -= 1
    if np.max(np.hypot(*band.k.T)) >= box / 2:
        raise DataError(f"{stack.star_path}: band r_max = {band.r_max:.2f} does not fit a "
                        f"{box} px box (needs r_max < {box / 2})")
    n = len(stack) if n_images is None else min(int(n_images), len(stack))
    mask = background_mask(box, bg_radius)
    sigma = 1.0
    acc = NoiseAccumulator(mask)
    if normalise:
        for start, images in stack.iter_chunks(chunk):
            acc.add(fourier_crop(images[:max(0, min(n, n_estimate) - start)], box))
            if start + len(images) >= min(n, n_estimate):
                break
        sigma = acc.sigma
        if not sigma > 0:
            raise DataError(f"{stack.star_path}: image background is constant (noise sigma "
                            f"estimate {sigma}); cannot normalise by it; pass normalise=False (CLI: "
                            f"--problem-arg normalise=false) to use the pixel values as they are")
        if sigma < NOISE_FREE_RATIO * acc.sigma_total:
            raise DataError(
                f"{stack.star_path}: the image background looks noise-free: its sigma "
                f"{sigma:.3g} is {sigma / acc.sigma_total:.1%} of the whole images' sigma "
                f"{acc.sigma_total:.3g} (noise-dominated cryo-EM images give ~95%; below "
                f"{NOISE_FREE_RATIO:.0%} is refused).  Normalising by it would scale the images "
                f"by {1 / sigma:.3g} and optimizers diverge.  Add noise to simulated images, or "
                f"pass normalise=False to use the pixel values as they are")
    coeffs = np.empty((n, band.size), dtype=np.complex64)
    dc = np.flatnonzero((band.k[:, 0] == 0) & (band.k[:, 1] == 0))
    bar = tqdm(total=n, desc=f"reading {Path(stack.star_path).name}", unit="img", disable=not progress)
    with bar:
        for start, images in stack.iter_chunks(chunk):
            if start >= n:
                break
            cropped = fourier_crop(images[:n - start], box)
            c = image_band_coefficients(cropped, band.k)
            if normalise:
                c[:, dc] -= box * acc.background_means(cropped)[:, None]
                c /= sigma
            coeffs[start:start + len(cropped)] = c
            bar.update(len(cropped))
    factor = n_src / box
    ctf = rescale_ctf(stack.ctf.subset(slice(0, n)), factor)
    ctf_values = np.empty((n, band.size), dtype=np.float32)
    for start in range(0, n, chunk):     # in chunks: float64 temporaries of (n, D) were ~6x the result
        ctf_values[start:start + chunk] = evaluate_ctf(ctf.subset(slice(start, start + chunk)), band.k / box)
    data = BandData(coeffs, ctf_values, stack.pixel_size * factor, box)
    return Preprocessed(data, float(sigma if normalise else np.nan), n_src, stack.pixel_size)
