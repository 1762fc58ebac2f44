"""Known-pose refinement at the paper's scale (Toader, Brubaker & Lederman): the 6ZU5 data set.

128 px at 2.8 Å (box 358 Å holds 6ZU5's 255 Å extent; Nyquist 5.6 Å) with
the band the full disc ``|k| <= r_max = 63 = N/2 - 1`` (every integer
frequency of :func:`problems.model.grids.disc_frequencies`, none on the
Nyquist row or column).  Why 128 and not their 192 px: in one run an SGD
step of 1000 images took 0.66 s at 128 px and 1.72 s at 192 px (2.3x the
samples per image, 3.4x the volume): a 52 s epoch at 192 px against the
30 s target on two cores (``reports/toader/README.md``).

Images (:func:`generate_paper_refine`): EXACT central slices of all
165,175 atoms of 6ZU5 as isotropic Gaussians with their B-factors
(:mod:`problems.data.atom_slices`: per-element form width, B in 8 bins of
equal atom count; the binned mixture is the ground truth and its slices
are exact to finufft's ``eps = 1e-5``), at uniform random rotations (drawn
on SO(3), stored as RELION ZYZ angles), continuous shifts ``N(0, 1 px^2)``
truncated to 2 px, CTFs drawn like the realistic ab-initio problem's
(defocus 1-3 µm, astigmatism up to 1000 Å, envelope B 50-150 Å^2, 300 kV,
Cs 2.7 mm, Q0 0.07).  Clean spectra on the disc only (zero beyond ``N/2 - 1``,
like every simulated stack here) are turned into real images, white noise of
``sigma = 1`` per pixel is added, and the stack is written as RELION STAR +
MRC into the cache, then read back through the particle loader that real data
(EMPIAR-10076) uses (:func:`problems.data.io.read_particles`,
:func:`problems.data.preprocess.preprocess_stack`, no normalisation: sigma is
known).  So the disc noise is the DFT of real white noise (Hermitian,
``E|n(k)|^2 = sigma^2``), as in a real data set.

SNR 0.05 (mean clean pixel power over the whole box / sigma^2, calibrated on
the first chunk of images): the realistic problem's value for the same
molecule and box; published estimates of cryo-EM particle images put the
SNR at 0.01-0.1 (large complexes like the ribosome at the upper end), and at
0.05 the spectral SNR per shell (``metadata["truth"]``) still reaches the
band edge, so the 30,000 images carry information there.

Cache: ``<cache>/refine-known-poses-paper-v<version>-seed<seed>-<hash>/`` holding
``particles.star``, ``particles.mrcs`` (float32, ~2 GB), the scaled atoms
(``atoms.npz``), the ground-truth Fourier volume ``Vhat(q)`` on the integer
grid (``ground_truth_fourier.npy``, complex64 ``[z, y, x]`` at ``q + N//2``)
and ``manifest.json`` (written last: :func:`problems.data.cache.ensure_dataset`
renames the whole folder into place, so an interrupted generation is redone,
never half-used).  Everything is deterministic from the seed (one generator
stream per ingredient; noise per chunk of images from its own child stream).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from ..data.atom_slices import AtomSlicer, atom_model
from ..data.atomic_models import MODELS, model_path
from ..data.cache import dataset_dir, ensure_dataset, seeded_streams
from ..data.io import DataError, read_particles, write_particles
from ..data.preprocess import Preprocessed, preprocess_stack, split_indices
from ..data.simulate import ctf_from_physical, random_ctf, random_shifts
from ..model.ctf import evaluate_ctf
from ..model.fourier import images_from_spectrum
from ..model.grids import Band, disc_frequencies
from ..model.known_pose import GaussianPrior
from ..model.likelihoods import FourierVolumePart
from ..problem import Problem
from .realistic import REALISTIC_SCALES
from .specs import SpecGeometry

PAPER_VERSION = 1
_AB_INITIO = REALISTIC_SCALES["paper"]
CHUNK = 256                     # images per generation step; fixes the layout of the noise streams


@dataclass(frozen=True)
class PaperRefineSpec(SpecGeometry):
    """Every fixed choice of the paper-scale known-pose data set (lengths in pixels, microscope units at the boundary)."""

    name: str = "refine-known-poses"
    scale: str = "paper"
    box_size: int = 128
    r_max_fraction: float = 63 / 64          # r_max = 63 = N/2 - 1: the full disc below Nyquist
    n_train: int = 30_000
    n_test: int = 1_000
    snr: float = 0.05
    sigma: float = 1.0
    lam: float = 1e-8                       # their lambda: f = mean NLL + lam/2 ||v||^2 (not in the data hash)
    interpolation: str = "tri"              # the objective's slice interpolation: "tri" or "nn"
    model: str = "6zu5"
    pixel_size_angstrom: float = 2.8
    b_bins: int = 8
    nufft_eps: float = 1e-5
    # shifts and CTFs drawn like the realistic ab-initio problem's at its paper scale (same molecule and box)
    shift_sigma: float = _AB_INITIO.shift_sigma
    shift_extent: float = _AB_INITIO.shift_extent
    voltage_kv: float = _AB_INITIO.voltage_kv
    cs_mm: float = _AB_INITIO.cs_mm
    amplitude_contrast: float = _AB_INITIO.amplitude_contrast
    defocus_min_angstrom: float = _AB_INITIO.defocus_min_angstrom
    defocus_max_angstrom: float = _AB_INITIO.defocus_max_angstrom
    astigmatism_max_angstrom: float = _AB_INITIO.astigmatism_max_angstrom
    bfactor_min: float = _AB_INITIO.bfactor_min
    bfactor_max: float = _AB_INITIO.bfactor_max
    version: int = PAPER_VERSION

    objective_fields: ClassVar[tuple[str, ...]] = ("r_max_fraction", "lam", "interpolation")

    @property
    def pixel_size(self) -> float:
        return self.pixel_size_angstrom

    def validate(self) -> None:
        if not 0 < self.r_max < self.box_size / 2:
            raise ValueError(f"{self.name}-{self.scale}: r_max = {self.r_max:g} must lie in (0, N/2 = "
                             f"{self.box_size / 2:g})")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"{self.name}-{self.scale}: need at least one training and one test image")
        if self.interpolation not in ("tri", "nn"):
            raise ValueError(f"{self.name}-{self.scale}: interpolation must be 'tri' or 'nn'")


PAPER_SPEC = PaperRefineSpec()


def paper_spec(**overrides) -> PaperRefineSpec:
    spec = replace(PAPER_SPEC, **overrides) if overrides else PAPER_SPEC
    spec.validate()
    return spec


def draw_poses(spec: PaperRefineSpec, seed: int) -> dict:
    """Rotations (RELION matrices), their ZYZ angles (degrees), shifts (pixels) and CTFs (microscope units)."""
    rng = seeded_streams(("poses", "ctf", "noise", "shifts"), seed, spec.version, spec.box_size, 0x7A9E)
    n = spec.n_images
    # RELION's A is the transpose of scipy's rotation (problems/data/simulate.py); uniform either way
    rotations = Rotation.random(n, random_state=rng["poses"]).as_matrix()
    euler = np.rad2deg(Rotation.from_matrix(np.transpose(rotations, (0, 2, 1))).as_euler("ZYZ"))
    return {"rotations": rotations, "euler_deg": euler,
            "shifts": random_shifts(rng["shifts"], n, spec.shift_sigma, spec.shift_extent),
            "ctf": random_ctf(spec, rng["ctf"], n), "noise": rng["noise"]}


def generate_paper_refine(spec: PaperRefineSpec, seed: int, directory: Path, progress: bool = True,
                          threads: int | None = None) -> dict:
    """Simulate ``spec``'s data set into ``directory`` (module docstring); returns the manifest entries."""
    import resource
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    n, box, apix = spec.n_images, spec.box_size, spec.pixel_size_angstrom
    atoms, atoms_info = atom_model(model_path(spec.model), box, apix, n_bins=spec.b_bins)
    drawn = draw_poses(spec, seed)
    ctf = ctf_from_physical(drawn["ctf"], apix)
    k = disc_frequencies(box, spec.r_max)
    iy, ix = k[:, 1] + box // 2, k[:, 0] + box // 2
    shell = np.rint(np.hypot(k[:, 0], k[:, 1])).astype(np.int64)
    starts = list(range(0, n, CHUNK))
    noise_rngs = drawn["noise"].spawn(len(starts))
    state = {"scale": None, "power": np.zeros(shell.max() + 1), "slicer": AtomSlicer(atoms, box, spec.nufft_eps,
                                                                                     threads)}

    def chunks():
        for i, start in enumerate(starts):
            sl = slice(start, min(start + CHUNK, n))
            clean = state["slicer"].slices(drawn["rotations"][sl], k, drawn["shifts"][sl])
            clean *= evaluate_ctf(ctf.subset(sl), k / box).astype(np.float32)
            if state["scale"] is None:           # calibrate the SNR on the first chunk (Parseval: unitary DFT)
                power = float(np.mean(np.sum(np.abs(clean.astype(np.complex128)) ** 2, axis=1))) / box**2
                state["scale"] = float(np.sqrt(spec.snr * spec.sigma**2 / power))
            clean *= np.float32(state["scale"])
            state["power"] += np.bincount(shell, np.sum(np.abs(clean) ** 2, axis=0, dtype=np.float64),
                                          minlength=state["power"].size)
            spec_c = np.zeros((clean.shape[0], box, box), dtype=np.complex64)
            spec_c[:, iy, ix] = clean
            img = images_from_spectrum(spec_c).astype(np.float32)
            img += np.float32(spec.sigma) * noise_rngs[i].standard_normal(img.shape, dtype=np.float32)
            yield img

    bar = tqdm(total=n, desc=f"simulating {spec.name}-{spec.scale} (exact atom slices)", unit="img",
               disable=not progress)
    with bar:
        write_particles(directory, chunks(), n, box, apix, drawn["ctf"], drawn["euler_deg"], drawn["shifts"],
                        progress=bar)
    simulate = {"wall_s": time.perf_counter() - t_wall, "cpu_s": time.process_time() - t_cpu}
    atoms = atoms.scaled(state["scale"])
    np.savez(directory / "atoms.npz", centres=atoms.centres, weights=atoms.weights, bins=atoms.bins,
             sigmas=atoms.sigmas)
    t0 = time.perf_counter()
    np.save(directory / "ground_truth_fourier.npy", AtomSlicer(atoms, box, spec.nufft_eps, threads).volume())
    counts = np.maximum(np.bincount(shell), 1)
    return {"spec": spec.as_dict(), "seed": seed, "model_sha256": MODELS[spec.model].sha256,
            "atoms": atoms_info, "mass_scale": state["scale"],
            # mean |C I|^2 per shell round(|k|) over every image / sigma^2 (noise power per coefficient)
            "spectral_snr_per_shell": (state["power"] / counts / n / spec.sigma**2).tolist(),
            "timings": {"simulate_wall_s": simulate["wall_s"], "simulate_cpu_s": simulate["cpu_s"],
                        "ground_truth_volume_s": time.perf_counter() - t0,
                        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}


def ensure_paper_refine(spec: PaperRefineSpec, seed: int = 0, progress: bool = True) -> Path:
    """The data set folder of ``spec`` and ``seed``, simulated first if missing (module docstring)."""
    return ensure_dataset(dataset_dir(spec, seed),
                          lambda tmp: generate_paper_refine(spec, seed, tmp, progress=progress))


def read_disc_particles(path, r_max_fraction: float = 63 / 64, box: int | None = None,
                        n_images: int | None = None, normalise: bool = True, progress: bool = True,
                        datadir=None, pixel_size: float | None = None) -> tuple[Preprocessed, np.ndarray]:
    """A particle file with poses (STAR or ``.cs``) on the full disc: ``(preprocessed, rotations)``.

    The reader and preprocessing of every particle stack here
    (:func:`problems.data.io.read_particles`, :func:`problems.data.preprocess.preprocess_stack`:
    Fourier crop to ``box``, optional noise normalisation to ``sigma = 1``),
    at :func:`problems.model.grids.disc_frequencies` of the cropped box with
    ``r_max = r_max_fraction * box / 2`` (at most ``box / 2 - 1``).  The file's
    shifts are undone once on the coefficients, ``I e^{+2 pi i k.t / n}``
    (``n`` the file's box; cropping keeps ``k``): the image model is
    ``C e^{-2 pi i k.t/n} S v`` and ``|I - C e^{-i phi} S v| = |I e^{+i phi} - C S v|``,
    so the likelihood needs no shift.
    """
    stack = read_particles(path, datadir=datadir, pixel_size=pixel_size)
    if stack.rotations is None:
        raise DataError(f"{path}: no poses (rlnAngleRot/Tilt/Psi or alignments3D/pose); known-pose "
                        "refinement needs them")
    n_box = stack.box_size if box is None else min(int(box), stack.box_size)
    n_box -= n_box % 2 if n_box < stack.box_size else 0
    r_max = min(r_max_fraction * n_box / 2, n_box / 2 - 1)
    k = disc_frequencies(n_box, r_max)
    band = Band(r_max=float(r_max), k=k, multiplicity=np.ones(k.shape[0]))
    pre = preprocess_stack(stack, band, box=box, n_images=n_images, normalise=normalise, progress=progress)
    images = pre.data.images
    if stack.shifts is not None:
        kt = (2 * np.pi / stack.box_size) * k.T.astype(np.float64)
        for start in range(0, images.shape[0], CHUNK * 4):         # chunks: (n, T) float64 phases are 3 GB
            sl = slice(start, min(start + CHUNK * 4, images.shape[0]))
            images[sl] *= np.exp(1j * (stack.shifts[sl] @ kt)).astype(np.complex64)
    return pre, stack.rotations[:images.shape[0]]


def load_refine_paper(seed: int = 0, progress: bool = True, path=None, normalise: bool = True, box: int | None = None, n_images: int | None = None,
                      datadir=None, pixel_size: float | None = None, **overrides) -> Problem:
    """The paper-scale known-pose problem (module docstring) on Toader et al.'s Fourier-volume model.

    Without ``path``: the simulated 6ZU5 data set (``overrides``: fields of
    :class:`PaperRefineSpec`), generated into the cache on first use.  With
    ``path``: a RELION STAR or cryoSPARC ``.cs`` file with poses through the
    same reader (:func:`read_disc_particles`; EMPIAR-10076 where it can be
    downloaded), cropped to ``box`` (default: the spec's 128 px), holding out ``spec.n_test`` images.

    Objective: :class:`problems.model.likelihoods.FourierVolumePart`
    (``spec.interpolation``) with their ``f = mean NLL + lam/2 ||v||^2``:
    the oracle divides the prior by the number of training images ``K``, so
    the prior is ``GaussianPrior(lam * K)``.
    """
    spec = paper_spec(**overrides)
    truth, ground_truth = {}, None
    if path is None:
        directory = ensure_paper_refine(spec, seed, progress)
        manifest = json.loads((directory / "manifest.json").read_text())
        pre, rotations = read_disc_particles(directory / "particles.star", spec.r_max_fraction, normalise=False,
                                             progress=progress)
        ground_truth = np.load(directory / "ground_truth_fourier.npy").reshape(-1).view(np.float32)
        truth = {k: manifest[k] for k in ("spectral_snr_per_shell", "atoms", "timings", "mass_scale")}
        truth["cache_dir"] = str(directory)
        fixed = {**{k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}, "seed": int(seed),
                 "poses": "known, uniform on SO(3)", "images": "exact slices of 6ZU5's atoms (binned B), finufft"}
    else:
        pre, rotations = read_disc_particles(path, spec.r_max_fraction, box=box or spec.box_size,
                                             n_images=n_images, normalise=normalise, progress=progress,
                                             datadir=datadir, pixel_size=pixel_size)
        fixed = {"scale": spec.scale, "seed": int(seed), "source": str(path), "source_box": pre.source_box,
                 "lam": spec.lam, "interpolation": spec.interpolation, "normalise": normalise,
                 "poses": "known, from the particle file"}
    n, n_test = pre.data.images.shape[0], spec.n_test
    if n <= n_test:
        raise DataError(f"{path}: {n} images cannot hold out n_test = {n_test} and still train")
    box_out, r_max = pre.data.box_size, min(spec.r_max_fraction * pre.data.box_size / 2, pre.data.box_size / 2 - 1)
    problem = Problem(name=spec.name if path is None else f"{spec.name}-file", version=spec.version, fixed=fixed,
                      data=pre.data, test_indices=split_indices(n, n_test, seed), rotations=rotations,
                      model=FourierVolumePart(box_out, r_max, spec.sigma, spec.interpolation),
                      prior=GaussianPrior(spec.lam * (n - n_test)), order_seed=seed, ground_truth=ground_truth)
    if truth:
        problem.metadata["truth"] = truth
    return problem
