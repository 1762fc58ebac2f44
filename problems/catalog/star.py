"""Any particle stack as a problem: RELION STAR (3.0 or 3.1+) or cryoSPARC ``.cs`` + MRC stacks.

Preprocessed by :mod:`problems.data.preprocess` (Fourier crop to the scale's
box, background noise normalisation to ``sigma = 1``, the first
``max_images`` particles, a seeded train/test split).  Particles are counted
after the readers drop repeated images (:func:`problems.data.particles.unique_images`),
so the held-out images have no copy among the training images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

from ..data.io import DataError, read_particles
from ..data.preprocess import preprocess_stack, split_indices
from ..model.grids import make_band
from ..problem import Problem, marginal_parts

STAR_VERSION = 1


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
                      n_images: int | None = None, n_test: int | None = None, n_score: int = 0,
                      shift_extent: float | None = None, shift_sigma: float = 1.0,
                      lambda_plus: float = 3e-2, lambda_minus: float = 1e-4,
                      normalise: bool = True, bg_radius: float = 0.9,
                      pixel_size: float | None = None, datadir: str | None = None) -> Problem:
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
    n_score : int
        Further held-out images for a scoring split (:meth:`Problem.score_nll`),
        drawn from the images left after the test split, which it leaves unchanged.
    shift_extent, shift_sigma : float
        Shift quadrature in cropped pixels.
    normalise, bg_radius : noise normalisation (see :mod:`problems.data.preprocess`).
    pixel_size : float, optional
        Å per pixel, for a file without one (RELION 3.0 STAR, ``.cs`` without
        ``blob/psize_A``); must agree with the file's when it has one.
    datadir : str, optional
        Folder searched first for the stacks the file names (see
        :func:`problems.data.particles.resolve_stack`).

    Raises
    ------
    DataError
        Bad input (see :mod:`problems.data.io`) or too few images to hold out ``n_test``.
    """
    if scale not in STAR_SCALES:
        raise ValueError(f"star: unknown scale {scale!r}; choose from {sorted(STAR_SCALES)}")
    defaults = STAR_SCALES[scale]
    stack = read_particles(path, datadir=datadir, pixel_size=pixel_size)
    box = min(defaults.box if box is None else int(box), stack.box_size)
    if box < stack.box_size and box % 2:
        box -= 1
    fraction = defaults.r_max_fraction if r_max is None else float(r_max)
    r_index = fraction * box / 2
    n_use = min(len(stack), n_images or defaults.max_images or len(stack))
    n_test = defaults.n_test if n_test is None else int(n_test)
    if n_use <= n_test + n_score:
        raise DataError(f"{path}: {n_use} images cannot hold out n_test = {n_test} and "
                        f"n_score = {n_score} and still train")
    extent = defaults.shift_extent if shift_extent is None else float(shift_extent)
    pre = preprocess_stack(stack, make_band(r_index), box=box, n_images=n_use, normalise=normalise,
                           bg_radius=bg_radius, progress=progress)
    fixed = {"scale": scale, "seed": seed, "source": str(Path(path).resolve()),
             "source_sha256": pooch.file_hash(str(path), alg="sha256"), "source_box": pre.source_box,
             "source_pixel_size_angstrom": pre.source_pixel_size, "r_max_fraction": fraction,
             "n_images": n_use, "n_test": n_test, "shift_extent": extent, "shift_sigma": shift_sigma,
             "normalisation": (f"background outside {bg_radius} x box/2, per-image mean, pooled "
                               f"sigma {pre.sigma_estimate:.6g}") if normalise else "none"}
    test = split_indices(n_use, n_test, seed)
    score = None
    if n_score:
        fixed["n_score"] = n_score
        rest = np.setdiff1d(np.arange(n_use), test)
        score = np.sort(np.random.default_rng([seed, 0x5C07E]).choice(rest, n_score, replace=False))
    return Problem(name="star", version=STAR_VERSION, fixed=fixed, data=pre.data,
                   test_indices=test, score_indices=score,
                   **marginal_parts(pre.data.box_size, r_index, 1.0, lambda_plus, lambda_minus, extent, shift_sigma),
                   order_seed=seed, ground_truth=None)
