"""What a simulated problem's ground truth says about its difficulty and its model error.

For problems whose ground truth is a Gaussian mixture with exact slices
(:mod:`problems.data.gaussians`), :func:`truth_diagnostics` measures:

* ``band_snr``: the in-band SNR, the mean over the band's coefficients
  (the full disc ``|k| <= r_max``, i.e. the half-plane band with its
  multiplicity) of the clean signal energy ``|C_i(k) Vhat(A_i^T [k, 0])|^2``
  divided by the noise variance per coefficient ``sigma^2`` (unitary DFT),
  over uniform random rotations and the data's own CTFs.  The whole-image
  SNR (the spec's ``snr``) counts mostly power outside the band, so it says
  little about how hard the objective is; ``band_snr x D`` (``D`` the disc's
  coefficient count) is the evidence one image carries about its pose;
* ``model_mismatch``: ``||S(x_true) - S_exact|| / ||S_exact||`` over the
  band and random rotations, where ``S`` is the objective's slice operator
  (trilinear on the 2x oversampled DFT of the voxel ground truth) and
  ``S_exact`` the mixture's exact slices -- the model error the data
  contain, which no density can fit;
* the prior against the data term at the ground truth: ``rho(x_true) / K``
  next to the held-out ``NLL(x_true)`` and the evidence
  ``NLL(0) - NLL(x_true)`` (nats per image the data give the truth over an
  empty density); their ratio says how much the prior matters;
* ``negative_fraction``: the fraction of ground-truth voxels below zero (0
  for a mixture with non-negative amplitudes).

Units of ``lambda_+-`` (``prior_units``): they multiply voxel values of a
density whose projection is the *plain sum* of voxels along the beam, in
images whitened to ``sigma = 1`` per pixel -- the paper's convention ("values
rescaled by the standard deviation of noise"), fixed by the central-slice
normalisation, not by the FFT's.  The values stay the paper's (changing them
would change every stored optimum); how much they matter on each problem is
what ``prior_over_K_vs_evidence`` reports.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..data.gaussians import GaussianMixture
from ..model.fourier import PartialDFT, cube_half_width
from ..model.projector import gather_points


def _sig(v: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (metadata is hashed: keep it stable)."""
    return float(f"{float(v):.{digits}g}")


def model_mismatch(mixture: GaussianMixture, density: np.ndarray, r_max: float, band_k: np.ndarray,
                   multiplicity: np.ndarray, rotations: np.ndarray) -> float:
    """Relative band error of the objective's slices of ``density`` against ``mixture``'s exact ones."""
    n = density.shape[0]
    m_max = cube_half_width(r_max)
    cube = PartialDFT(n, m_max, real_dtype=np.float64).forward(density.astype(np.float64))
    k = band_k.astype(np.float64)
    q = k[None, :, 0:1] * rotations[:, None, 0, :] + k[None, :, 1:2] * rotations[:, None, 1, :]
    approx = gather_points(cube, float(m_max), 2 * q)
    exact = mixture.slices(rotations, k, n)
    err = np.sum(multiplicity * np.abs(approx - exact) ** 2)
    return float(np.sqrt(err / np.sum(multiplicity * np.abs(exact) ** 2)))


def band_snr(mixture: GaussianMixture, n: int, band_k: np.ndarray, multiplicity: np.ndarray,
             ctf: np.ndarray, rotations: np.ndarray, sigma: float) -> float:
    """Mean in-band signal energy per coefficient over ``sigma^2`` (module docstring).

    ``ctf`` (B, D) are the CTF values on the half-plane band, one row per rotation.
    """
    exact = mixture.slices(rotations, band_k.astype(np.float64), n)
    energy = np.sum(multiplicity * np.abs(ctf * exact) ** 2, axis=1) / multiplicity.sum()
    return float(energy.mean() / sigma**2)


def truth_diagnostics(problem, mixture: GaussianMixture, ctf: np.ndarray, seed: int = 0,
                      n_rotations: int = 200) -> dict:
    """The measurements of the module docstring for ``problem`` (a :class:`problems.problem.Problem`).

    ``ctf`` (B, D): band CTF values of some of the problem's images (the
    rows are paired with random rotations drawn from ``seed``).
    """
    rng = np.random.default_rng([seed, 0x7207])
    rotations = Rotation.random(n_rotations, random_state=rng).as_matrix()
    band, n, truth = problem.band, problem.box_size, problem.ground_truth
    ctf = np.asarray(ctf, dtype=np.float64)[:n_rotations]
    rotations = rotations[:ctf.shape[0]]
    snr = band_snr(mixture, n, band.k, band.multiplicity, ctf, rotations, problem.sigma)
    nll_truth = problem.test_nll(truth)
    nll_zero = problem.test_nll(np.zeros_like(truth))
    rho_over_k = problem.prior.value(truth) / problem.n_train
    evidence = nll_zero - nll_truth
    return {
        "band_snr": _sig(snr),
        "band_coefficients_disc": int(band.multiplicity.sum()),
        "band_evidence_per_image": _sig(snr * band.multiplicity.sum()),
        "model_mismatch": _sig(model_mismatch(mixture, truth, band.r_max, band.k, band.multiplicity,
                                              rotations)),
        "model_mismatch_definition": "||S_trilinear(x_true) - S_exact|| / ||S_exact|| in the band, "
                                     f"{len(rotations)} uniform random rotations",
        "test_nll_truth": _sig(nll_truth, 6),
        "test_nll_zero": _sig(nll_zero, 6),
        "prior_over_K_truth": _sig(rho_over_k),
        "prior_over_K_vs_evidence": _sig(rho_over_k / evidence) if evidence > 0 else None,
        "negative_fraction": _sig(np.mean(truth < 0)),
        "prior_units": "lambda per voxel value; an image pixel is the plain sum of voxels along the beam, "
                       "noise sigma = 1 per pixel",
        "simulation": "exact Gaussian-mixture slices at continuous poses (problems.data.gaussians)",
    }
