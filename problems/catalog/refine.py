"""High-resolution refinement with known poses: a linear least-squares problem.

The setting of Toader, Brubaker & Lederman (2025): the pose ``A_i`` of every
image is given, so nothing is marginalised and the objective (mean form, like
the ab-initio problem's) is a quadratic in the density ``x``:

.. math::

    f_B(x) = \\frac{1}{|B|}\\sum_{i\\in B}\\frac{1}{2\\sigma^2}\\sum_{t\\in H} c_t
             \\big|I_i(k_t) - C_i(k_t)\\, S_{A_i}(x)(k_t)\\big|^2
             + \\frac{1}{K}\\,\\frac{\\lambda}{2}\\,\\|x\\|^2 .

* ``S_A(x)(k) = Vhat(A^T [k, 0])``: trilinear interpolation of the 2x
  oversampled centred DFT (the same forward model as the ab-initio problem,
  :class:`problems.model.fourier.PartialDFT` + :class:`problems.model.projector.Slicer`);
* ``H`` is the half-plane band ``|k| <= r_max`` of :func:`problems.model.grids.make_band`
  with multiplicity ``c_t = 1`` at DC and 2 elsewhere.  For a real volume the
  cube is Hermitian and trilinear interpolation keeps that exactly
  (``S(-k) = conj S(k)``), so the half-plane sum with ``c_t`` *is* the sum over
  the full disc;
* the band may go up to Nyquist, with ``r_max < N/2 - 1``: then no band
  coefficient (in 2D) or band-limited volume coefficient (in 3D) has a
  component equal to ``N/2``.  Nyquist coefficients are their own Hermitian
  partners (real, multiplicity 1, noise variance ``sigma^2`` not ``sigma^2/2``
  per part), so excluding them keeps ``c_t`` exactly 1 (DC) or 2 (the rest);
  the cube half-width ``m_max = ceil(2 r_max) + 1`` half-indices then stays
  below ``N`` so the oversampled frequencies ``m/2`` stay below Nyquist;
* the optional prior is Gaussian, ``rho(x) = lambda/2 ||x||^2`` (default
  ``lambda = 0``: plain least squares);
* ``1 / (2 sigma^2)`` keeps the Gaussian likelihood's scale; the constant is dropped.

The Hessian is constant,

.. math:: \\nabla^2 f_B = \\frac{1}{|B|\\sigma^2}\\sum_{i\\in B}
          \\mathrm{Re}\\big(F^H T_i^T\\,\\mathrm{diag}(c\\,C_i^2)\\,T_i F\\big)
          + \\frac{\\lambda}{K} I,

so ``hvp`` ignores ``x`` (it is still validated and charged).

Data: poses uniform on SO(3) (drawn as a rotation, stored as RELION ZYZ
Euler angles and rebuilt with :func:`problems.model.poses.euler_to_matrix`), CTFs
drawn as in the ab-initio problem (:mod:`problems.data.cache`), images
simulated *in the band* as ``C_i S_{A_i}(x_true) + n`` with the objective's
own forward model (float64) and complex Gaussian noise matching white real
noise of variance ``sigma^2`` per pixel under the unitary DFT:
``Re n, Im n ~ N(0, sigma^2 / 2)`` for ``k != 0`` and ``n(0) ~ N(0, sigma^2)``
(real).  ``x_true`` is :func:`problems.data.phantoms.synthetic_phantom` scaled to
the stated SNR (mean clean pixel power / sigma^2, as in the ab-initio problem).
Simulation takes well under a second at the small scale and is deterministic
from the seed, so nothing is cached on disk.

The objective's own forward model is used on purpose here (unlike the
ab-initio problems, whose images are exact Gaussian-mixture slices): this
problem studies the conditioning of the known-pose least squares, whose
Hessian does not depend on the data; a model mismatch would only add a
residual floor to the optimum, not change the condition numbers.  Version 2:
the phantom became :func:`problems.data.phantoms.synthetic_mixture` sampled
on the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from ..data.cache import BandData, seeded_streams
from ..data.io import DataError, read_particles
from ..data.preprocess import preprocess_stack, split_indices
from ..data.phantoms import synthetic_phantom
from ..data.simulate import ctf_from_physical, random_ctf, scale_for_snr
from ..model.ctf import CTFParams, evaluate_ctf
from ..model.grids import make_band
from ..model.known_pose import GaussianPrior, KnownPoseLikelihood
from ..model.likelihoods import KnownPosePart
from ..model.poses import euler_to_matrix
from ..problem import Problem
from .refine_paper import PAPER_SPEC, PaperRefineSpec, load_refine_paper
from .specs import SpecGeometry

REFINE_VERSION = 2                    # 2: the synthetic phantom became a Gaussian mixture (issue 14)


# ----------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class RefineSpec(SpecGeometry):
    """Every fixed choice of the known-pose refinement problem at one scale.

    Lengths in pixels except ``pixel_size_angstrom`` and the CTF ranges
    (microscope units, converted at the boundary).  The CTF ranges are the
    ab-initio problem's (:class:`problems.catalog.synthetic.SyntheticSpec`).
    """

    name: str
    scale: str
    box_size: int
    r_max_fraction: float          # band limit as a fraction of Nyquist (N/2); r_max < N/2 - 1
    n_train: int
    n_test: int
    snr: float = 0.1               # mean clean pixel power / sigma^2
    sigma: float = 1.0
    prior_lambda: float = 0.0      # Gaussian prior lambda/2 ||x||^2 (0: none)
    pixel_size_angstrom: float = 3.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_min_angstrom: float = 15000.0
    defocus_max_angstrom: float = 40000.0
    astigmatism_max_angstrom: float = 1000.0
    bfactor_min: float = 50.0
    bfactor_max: float = 150.0
    version: int = REFINE_VERSION


    def validate(self) -> None:
        if not 0 < self.r_max_fraction:
            raise ValueError(f"{self.name}: r_max_fraction must be positive, got {self.r_max_fraction}")
        if not self.r_max < self.box_size / 2 - 1:
            limit = (self.box_size / 2 - 1) / (self.box_size / 2)
            raise ValueError(f"{self.name}: r_max = {self.r_max:g} must be < N/2 - 1 = {self.box_size / 2 - 1:g} "
                             f"(r_max_fraction < {limit:.4f} at N = {self.box_size})")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"{self.name}: need at least one training and one test image")


REFINE_SCALES: dict[str, RefineSpec | PaperRefineSpec] = {
    # r_max = 6 < N/2 - 1 = 7; band-limited volumes have 905 real coordinates (dense matrices are cheap)
    "tiny": RefineSpec("refine-known-poses", "tiny", box_size=16, r_max_fraction=0.75,
                       n_train=300, n_test=20),
    # r_max = 14 < 15; 11,487 real coordinates at the top band
    "small": RefineSpec("refine-known-poses", "small", box_size=32, r_max_fraction=0.875,
                        n_train=2000, n_test=100),
    # 128 px, the full disc to r = 63, exact slices of 6ZU5's atoms, Toader et al.'s Fourier-volume model
    # (problems/catalog/refine_paper.py; version 2 of this problem had a 64 px "paper" scale here)
    "paper": PAPER_SPEC,
}


def refine_spec(scale: str, **overrides) -> RefineSpec:
    """The spec of ``scale`` with ``overrides`` (e.g. ``r_max_fraction``) applied and checked."""
    if scale not in REFINE_SCALES:
        raise ValueError(f"refine-known-poses: unknown scale {scale!r}; choose from {sorted(REFINE_SCALES)}")
    spec = replace(REFINE_SCALES[scale], **overrides) if overrides else REFINE_SCALES[scale]
    spec.validate()
    return spec


# -------------------------------------------------------------------------- problem
def simulate_refine(spec: RefineSpec, seed: int) -> dict:
    """Poses, CTFs, band images and the ground truth of ``spec`` (deterministic from ``seed``)."""
    rng = seeded_streams(("poses", "ctf", "noise", "split"), seed, spec.version, spec.box_size, 0x7EF1)
    n, box = spec.n_images, spec.box_size
    band = make_band(spec.r_max)
    # RELION's A is the transpose of scipy's rotation (see problems/data/simulate.py); uniform either way.
    drawn = Rotation.random(n, random_state=rng["poses"]).as_matrix()
    euler = Rotation.from_matrix(np.transpose(drawn, (0, 2, 1))).as_euler("ZYZ")         # (rot, tilt, psi)
    rotations = euler_to_matrix(euler[:, 0], euler[:, 1], euler[:, 2])
    phys = random_ctf(spec, rng["ctf"], n)
    ctf_params: CTFParams = ctf_from_physical(phys, spec.pixel_size_angstrom)
    ctf = evaluate_ctf(ctf_params, band.k / box)
    phantom = synthetic_phantom(box).astype(np.float64)
    n_cal = min(n, 200)
    phantom *= scale_for_snr(phantom.astype(np.float32), rotations[:n_cal], np.zeros((n_cal, 2)),
                             ctf_params.subset(slice(0, n_cal)), spec.snr, spec.sigma)
    model = KnownPoseLikelihood(box, band, spec.sigma, dtype=np.float64)
    clean = ctf * model.slices(phantom, model.prepare(np.zeros((n, band.size), complex), ctf, rotations))
    noise = rng["noise"].standard_normal((n, band.size, 2)) @ np.array([1.0, 1j]) * (spec.sigma / np.sqrt(2))
    dc = np.all(band.k == 0, axis=1)
    noise[:, dc] = rng["noise"].standard_normal((n, int(dc.sum()))) * spec.sigma
    test = np.sort(rng["split"].permutation(n)[:spec.n_test])
    shell = np.rint(np.hypot(band.k[:, 0], band.k[:, 1])).astype(int)
    power = np.bincount(shell, np.mean(np.abs(clean) ** 2, axis=0)) / np.maximum(np.bincount(shell), 1)
    return {"band": band, "rotations": rotations, "euler": euler, "ctf": ctf, "images": clean + noise,
            "spectral_snr_per_shell": (power / spec.sigma**2).tolist(),
            "ground_truth": phantom.astype(np.float32), "test_indices": test, "ctf_physical": phys}


def load_refine(scale: str = "small", seed: int = 0, progress: bool = False, path: str | None = None,
                **overrides) -> Problem:
    """Build the known-pose refinement problem (``overrides``: fields of :class:`RefineSpec`).

    One :class:`problems.problem.Problem` with the known-pose likelihood part
    (:class:`problems.model.likelihoods.KnownPosePart`) and the Gaussian prior.
    ``path=``: a RELION STAR or cryoSPARC ``.cs`` file with poses instead of
    the simulation (:func:`load_refine_particles`; ``overrides`` are its keywords).
    ``scale="paper"``: :func:`problems.catalog.refine_paper.load_refine_paper` (128 px, exact
    6ZU5 atom slices, the free complex Fourier volume), with or without ``path``.
    """
    if scale == "paper":                 # its own data set and model (problems/catalog/refine_paper.py)
        return load_refine_paper(seed=seed, progress=progress, path=path, **overrides)
    if path is not None:
        return load_refine_particles(path, scale=scale, seed=seed, progress=progress, **overrides)
    spec = refine_spec(scale, **overrides)
    data = simulate_refine(spec, seed)
    fixed = {**{k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}, "seed": int(seed),
             "poses": "known, uniform on SO(3)"}
    problem = Problem(name=spec.name, version=spec.version, fixed=fixed,
                      data=BandData(data["images"], data["ctf"], spec.pixel_size_angstrom, spec.box_size),
                      test_indices=data["test_indices"], rotations=data["rotations"],
                      model=KnownPosePart(spec.box_size, spec.r_max, spec.sigma),
                      prior=GaussianPrior(spec.prior_lambda), order_seed=seed, ground_truth=data["ground_truth"])
    # spectral SNR per integer shell round(|k|): mean |C S(x_true)|^2 over images / sigma^2 (noise per coefficient)
    problem.metadata["truth"] = {"spectral_snr_per_shell": data["spectral_snr_per_shell"]}
    return problem


def load_refine_particles(path: str, scale: str = "small", seed: int = 0, progress: bool = True,
                          r_max_fraction: float = 0.9, box: int | None = None, n_images: int | None = None,
                          n_test: int = 100, normalise: bool = True, prior_lambda: float = 0.0,
                          datadir: str | None = None, pixel_size: float | None = None) -> Problem:
    """Known-pose refinement on a particle file with poses (STAR or ``.cs``), through the real-data loader.

    The same reader and preprocessing as the ``star`` family
    (:func:`problems.data.io.read_particles`, :func:`problems.data.preprocess.preprocess_stack`:
    Fourier crop to ``box``, noise normalisation to ``sigma = 1``); the
    file's rotations become the known poses, and its shifts are undone once
    on the band coefficients: the image model is ``C e^{-2 pi i k.s / n} S(x)``
    (``n`` the file's box; cropping keeps the index ``k``), so
    ``|I - C e^{-i phi} S| = |I e^{+i phi} - C S|`` and the likelihood needs
    no shift.  The band is ``r_max_fraction`` of the cropped box's Nyquist
    (kept below ``box/2 - 1``).  EMPIAR-10076 (``problems/data/downloads.py``)
    runs this way where it can be downloaded.
    """
    stack = read_particles(path, datadir=datadir, pixel_size=pixel_size)
    if stack.rotations is None:
        raise DataError(f"{path}: no poses (rlnAngleRot/Tilt/Psi or alignments3D/pose); known-pose "
                        "refinement needs them")
    n_box = stack.box_size if box is None else min(int(box), stack.box_size)
    r_max = min(r_max_fraction * n_box / 2, n_box / 2 - 1.01)
    band = make_band(r_max)
    pre = preprocess_stack(stack, band, box=box, n_images=n_images, normalise=normalise, progress=progress)
    n = pre.data.images.shape[0]
    if n <= n_test:
        raise DataError(f"{path}: {n} images cannot hold out n_test = {n_test} and still train")
    images = pre.data.images
    if stack.shifts is not None:
        phase = 2 * np.pi * (stack.shifts[:n] @ band.k.T) / stack.box_size
        images = (images * np.exp(1j * phase)).astype(np.complex64)
    fixed = {"scale": scale, "seed": int(seed), "source": str(path), "source_box": pre.source_box,
             "r_max_fraction": r_max_fraction, "n_images": n, "n_test": n_test, "prior_lambda": prior_lambda,
             "poses": "known, from the particle file", "normalise": normalise}
    return Problem(name="refine-known-poses-file", version=REFINE_VERSION, fixed=fixed,
                   data=BandData(images, pre.data.ctf, pre.data.pixel_size, pre.data.box_size),
                   test_indices=split_indices(n, n_test, seed), rotations=stack.rotations[:n],
                   model=KnownPosePart(pre.data.box_size, band.r_max, 1.0), prior=GaussianPrior(prior_lambda),
                   order_seed=seed)
