"""Speed of the known-pose oracle at Toader et al.'s scale: one SGD epoch, measured, not assumed.

The target (issue 23): one epoch of known-pose SGD on 30,000 images at
batch 1000 within 30 s on 2 cores.  :func:`epoch_speed` times
``value_and_grad`` of :class:`problems.model.known_pose.KnownPoseLikelihood`
(float32, matrix-free: partial DFT of the 2x oversampled cube by three
separable products + trilinear slicing, numba-threaded; no dense basis) on
random data with random poses at a box and band, and projects the epoch as
``30 x`` the median step.  It also times the oversampled cube's round trip
by the dense three-product route (:class:`problems.model.fourier.PartialDFT`)
in the same run, for the ratio to the FFT route the likelihood takes near Nyquist.  The same run's numpy sgemm rate
(:func:`bench.experiments.perf.gemm_gflops`) is printed beside it so a
number from a loaded machine can be read as a ratio.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.spatial.transform import Rotation

from problems.model.fourier import PartialDFT
from problems.model.grids import make_band
from problems.model.known_pose import KnownPoseLikelihood
from problems.model.projector import Slicer

from .perf import gemm_gflops, peak_rss_gib


def epoch_speed(box: int = 128, r_max_fraction: float = 0.98, batch: int = 1000, n_train: int = 30_000,
                steps: int = 3, seed: int = 0) -> dict:
    """Median seconds of one ``value_and_grad`` at ``batch`` and the projected epoch (module docstring)."""
    rng = np.random.default_rng(seed)
    r_max = min(r_max_fraction * box / 2, box / 2 - 1.01)          # below Nyquist, as the problem requires
    band = make_band(r_max)
    lik = KnownPoseLikelihood(box, band, 1.0, np.float32)
    rot = Rotation.random(batch, random_state=rng).as_matrix()
    images = (rng.standard_normal((batch, band.size)) + 1j * rng.standard_normal((batch, band.size))).astype(np.complex64)
    ctf = rng.uniform(-1, 1, (batch, band.size)).astype(np.float32)
    x = rng.standard_normal((box,) * 3).astype(np.float32)
    lik.nll_and_grad(x, lik.prepare(images[:2], ctf[:2], rot[:2]))          # compile outside the timing
    times, phases = [], {}
    for _ in range(steps):
        t0 = time.perf_counter()
        terms = lik.prepare(images, ctf, rot)
        t1 = time.perf_counter()
        lik.nll_and_grad(x, terms)
        t2 = time.perf_counter()
        times.append(t2 - t0)
        phases.setdefault("prepare (slice coordinates)", []).append(t1 - t0)
        phases.setdefault("value_and_grad", []).append(t2 - t1)
    step = float(np.median(times))
    # the phases of one step, one by one (same data): which dominates
    clock = [time.perf_counter()]
    cube = lik.dft.forward(x)
    clock.append(time.perf_counter())
    slicer = Slicer(terms.coords, lik.m_max, use_symmetry=False)
    s = slicer.forward(cube)
    clock.append(time.perf_counter())
    g = slicer.adjoint(s)
    clock.append(time.perf_counter())
    lik.dft.adjoint(g)
    clock.append(time.perf_counter())
    split = dict(zip(("forward DFT", "gather (trilinear slices)", "scatter (adjoint slices)", "adjoint DFT"),
                     np.diff(clock).tolist()))
    dft = split["forward DFT"] + split["adjoint DFT"]
    dense = PartialDFT(box, lik.m_max, np.float32)             # the same map by three dense products: same-run ratio
    t0 = time.perf_counter()
    dense.adjoint(dense.forward(x))
    dense_dft = time.perf_counter() - t0
    return {"box": box, "r_max": band.r_max, "coefficients": band.size, "batch": batch, "n_train": n_train,
            "seconds_per_step": step, "epoch_seconds": step * np.ceil(n_train / batch),
            "partial_dft_round_trip_seconds": dft, "dense_dft_round_trip_seconds": dense_dft,
            "phases": {k: float(np.median(v)) for k, v in phases.items()}, "step_phases": split,
            "numpy_sgemm_gflops": gemm_gflops(), "peak_rss_gib": peak_rss_gib()}


def fourier_epoch_speed(box: int = 128, batch: int = 1000, n_train: int = 30_000, steps: int = 3, seed: int = 0,
                        against_old: bool = False) -> dict:
    """One epoch of known-pose SGD on the paper-scale model (the free Fourier volume), measured per step.

    Times, on random data at the paper geometry (``box``, full disc
    ``r = box/2 - 1``, random poses, CTF values in [-1, 1]), the median of
    ``steps`` SGD steps (``prepare`` + ``value_and_grad`` + the update) of
    :class:`problems.model.fourier_volume.FourierVolumeLikelihood` (float32,
    trilinear), a value (one Armijo trial) and an hvp (Algorithm 1's probe),
    and projects the epoch as ``ceil(n_train / batch)`` steps.  Same-run
    references: one read of the batch's images and CTF values (the least any
    step must do; ``step / read`` is the ratio to quote from a loaded
    machine), numpy's sgemm rate, and with ``against_old`` one step of the
    small-scale path (:class:`problems.model.known_pose.KnownPoseLikelihood`,
    real volume, 2x oversampled cube) at the same box.
    """
    from problems.model.fourier_volume import FourierVolumeLikelihood
    rng = np.random.default_rng(seed)
    lik = FourierVolumeLikelihood(box, box / 2 - 1, 1.0, "tri", np.float32)
    t = lik.k.shape[0]
    rot = Rotation.random(batch, random_state=rng).as_matrix()
    images = (rng.standard_normal((batch, t), np.float32) + 1j * rng.standard_normal((batch, t), np.float32))
    ctf = rng.uniform(-1, 1, (batch, t)).astype(np.float32)
    x = rng.standard_normal(lik.shape).astype(np.float32)
    small = lik.prepare(images[:2], ctf[:2], rot[:2])
    lik.nll_and_grad(x, small), lik.nll(x, small), lik.hvp(x, x, small)          # compile outside the timing
    timing = {"sgd_step": [], "value": [], "hvp": [], "read_batch": []}
    for _ in range(steps):
        t0 = time.perf_counter()
        terms = lik.prepare(images, ctf, rot)
        _, g = lik.nll_and_grad(x, terms)
        x -= np.float32(1e-3) * g
        t1 = time.perf_counter()
        lik.nll(x, terms)
        t2 = time.perf_counter()
        lik.hvp(x, x, terms)
        t3 = time.perf_counter()
        float(np.vdot(images, images).real) + float(ctf.sum())
        t4 = time.perf_counter()
        for key, dt in zip(timing, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            timing[key].append(dt)
    med = {k: float(np.median(v)) for k, v in timing.items()}
    per_epoch = int(np.ceil(n_train / batch))
    out = {"box": box, "r_max": lik.r_max, "samples_per_image": t, "batch": batch, "n_train": n_train,
           "model": "free Fourier volume, trilinear, float32", "seconds_per_step": med["sgd_step"],
           "epoch_seconds": med["sgd_step"] * per_epoch, "value_seconds": med["value"], "hvp_seconds": med["hvp"],
           "epoch_seconds_sgd_armijo_one_trial": (med["sgd_step"] + med["value"]) * per_epoch,
           "epoch_seconds_alg1_one_trial": (med["sgd_step"] + med["value"] + med["hvp"]) * per_epoch,
           "read_batch_seconds": med["read_batch"], "step_over_read": med["sgd_step"] / med["read_batch"],
           "numpy_sgemm_gflops": gemm_gflops(), "peak_rss_gib": peak_rss_gib()}
    if against_old:
        old = KnownPoseLikelihood(box, make_band(min(0.98 * box / 2, box / 2 - 1.01)), 1.0, np.float32)
        k = old.band.size
        xo = rng.standard_normal((box,) * 3).astype(np.float32)
        o_terms = old.prepare(images[:2, :k], ctf[:2, :k], rot[:2])
        old.nll_and_grad(xo, o_terms)
        t0 = time.perf_counter()
        old.nll_and_grad(xo, old.prepare(images[:, :k], ctf[:, :k], rot))
        out["old_path_step_seconds"] = time.perf_counter() - t0
        out["old_over_new"] = out["old_path_step_seconds"] / med["sgd_step"]
    return out
