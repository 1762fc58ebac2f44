"""The paper's synthetic ab-initio problem: hand-made phantom, zero shifts, realistic CTFs.

Data are simulated once into the cache (:mod:`problems.data.cache`) as a
RELION STAR file + MRC stack and read back through the loader real data use.

Version 2: the phantom is a Gaussian mixture (:func:`problems.data.phantoms.synthetic_mixture`)
whose images are exact central slices at continuous poses
(:func:`problems.data.simulate.exact_images`), not the objective's own
trilinear model; the ground truth is the mixture sampled on the grid
(non-negative).  ``p.metadata["truth"]`` holds the measured in-band SNR, the
objective's model mismatch and the prior against the NLL at the truth
(:mod:`problems.catalog.truth`).

Version 3: the phantom's random parts (core tilt, lobe centres and
amplitudes) are drawn from the seed's ``"phantom"`` stream, so every seed --
including a leaderboard's secret one -- has its own ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..data.cache import dataset_dir, ensure_dataset, load_band_data, load_ground_truth, seeded_streams
from ..data.phantoms import synthetic_mixture
from ..data.simulate import load_mixture, random_ctf, random_shifts, simulate_stack
from ..model.grids import make_band
from ..problem import Problem, marginal_parts
from .specs import BoxInAngstrom
from .truth import truth_diagnostics

SYNTHETIC_VERSION = 3                 # 2: exact Gaussian-mixture images (issue 14); 3: phantom drawn from the seed (issue 13)


@dataclass(frozen=True)
class SyntheticSpec(BoxInAngstrom):
    """The paper's synthetic ab-initio setting at one scale.

    Lengths in pixels except ``box_angstrom`` and the CTF ranges (microscope
    units, converted at the file boundary).
    """

    name: str
    scale: str
    box_size: int
    r_max_fraction: float          # band limit as a fraction of Nyquist (N/2)
    n_train: int
    n_test: int
    snr: float                     # mean clean pixel power / sigma^2 over the whole image
    n_score: int = 0               # further held-out images: the harness's scoring split (Problem.score_nll)
    sigma: float = 1.0
    lambda_plus: float = 1e-4
    lambda_minus: float = 1e-4
    shift_extent: float = 0.0      # pixels; 0 = the paper's zero shifts
    shift_sigma: float = 1.0
    box_angstrom: float = 384.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_min_angstrom: float = 15000.0
    defocus_max_angstrom: float = 40000.0
    astigmatism_max_angstrom: float = 1000.0
    bfactor_min: float = 50.0
    bfactor_max: float = 150.0
    version: int = SYNTHETIC_VERSION



SYNTHETIC_SCALES: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec("synthetic", "tiny", box_size=24, r_max_fraction=0.25,
                          n_train=400, n_test=20, n_score=200, snr=0.1),
    "small": SyntheticSpec("synthetic", "small", box_size=64, r_max_fraction=0.16,
                           n_train=5000, n_test=100, n_score=1000, snr=0.05),
    "paper": SyntheticSpec("synthetic", "paper", box_size=128, r_max_fraction=0.10,
                           n_train=50000, n_test=100, n_score=1000, snr=0.05),
}


def synthetic_spec(scale: str, **overrides) -> SyntheticSpec:
    if scale not in SYNTHETIC_SCALES:
        raise ValueError(f"synthetic: unknown scale {scale!r}; choose from {sorted(SYNTHETIC_SCALES)}")
    return replace(SYNTHETIC_SCALES[scale], **overrides) if overrides else SYNTHETIC_SCALES[scale]


def generate_synthetic(spec: SyntheticSpec, seed: int, directory: Path, progress: bool = True) -> None:
    """Simulate the dataset of ``spec`` into ``directory`` (deterministic from ``seed``)."""
    rng = seeded_streams(("poses", "ctf", "noise", "split", "phantom"), seed, spec.version, spec.box_size)
    n = spec.n_images
    rotations = Rotation.random(n, random_state=rng["poses"]).as_matrix()     # uniform on SO(3)
    shifts = random_shifts(rng["poses"], n, spec.shift_sigma, spec.shift_extent)     # zeros by default
    phys = random_ctf(spec, rng["ctf"], n)
    simulate_stack(directory, synthetic_mixture(spec.box_size, rng["phantom"]), rotations, shifts, phys, spec, rng["noise"],
                   progress)
    split = rng["split"].permutation(n)
    np.save(directory / "test_indices.npy", np.sort(split[:spec.n_test]))
    np.save(directory / "score_indices.npy", np.sort(split[spec.n_test:spec.n_test + spec.n_score]))


def ensure_synthetic(spec: SyntheticSpec, seed: int, progress: bool = True) -> Path:
    """Path of the dataset folder, generating it first if it is missing or incomplete."""
    def generate(tmp: Path) -> dict:
        generate_synthetic(spec, seed, tmp, progress=progress)
        return {"spec": spec.as_dict(), "seed": seed}

    return ensure_dataset(dataset_dir(spec, seed), generate)





def load_synthetic(scale: str = "small", seed: int = 0, progress: bool = True, **overrides) -> Problem:
    """The synthetic problem at ``scale``; ``overrides`` are :class:`SyntheticSpec` fields."""
    spec = synthetic_spec(scale, **overrides)
    directory = ensure_synthetic(spec, seed, progress=progress)
    data = load_band_data(directory / "particles.star", make_band(spec.r_max), progress=progress)
    fixed = {k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}
    fixed["seed"] = seed
    problem = Problem(name=spec.name, version=spec.version, fixed=fixed, data=data,
                      test_indices=np.load(directory / "test_indices.npy"),
                      **marginal_parts(data.box_size, spec.r_max, spec.sigma, spec.lambda_plus, spec.lambda_minus,
                                       spec.shift_extent, spec.shift_sigma), order_seed=seed,
                      ground_truth=load_ground_truth(directory),
                      score_indices=np.load(directory / "score_indices.npy") if spec.n_score else None)
    problem.metadata["truth"] = truth_diagnostics(problem, load_mixture(directory / "ground_truth_mixture.npz"),
                                                  data.ctf[:200], seed)
    return problem
