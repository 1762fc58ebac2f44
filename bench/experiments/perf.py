"""Oracle throughput against the same run's matrix-product peak (``cryoopt bench oracle``).

Every speed claim of the project is a ratio measured in one run: the
machines are shared and noisy, absolute numbers drift, ratios much less.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np

from problems.model.devices import synchronize


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 square matrix product rate of numpy's BLAS, GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@dataclass
class OracleTarget:
    """What :func:`bench_oracle` times: a likelihood, a prior, band data and a density."""

    label: str
    likelihood: object
    prior: object
    images: np.ndarray
    ctf: np.ndarray
    x: np.ndarray
    n_train: int

    @classmethod
    def from_problem(cls, problem, device: str | None = None) -> "OracleTarget":
        from problems import problem_label
        if device is not None:
            problem.use_device(device)
        images, ctf = problem.split_arrays("train")[:2]
        return cls(problem_label(problem), problem.likelihood(), problem.prior,
                   images, ctf, problem.initial_density(0), problem.n_train)

    def oracle(self):
        """A fresh oracle; on a device the images are moved there once (:class:`DeviceRows`)."""
        from problems.model.devices import DeviceRows
        from problems.oracle import CountingOracle
        if getattr(self.likelihood, "device", "cpu") != "cpu" and not isinstance(self.images, DeviceRows):
            self.images, self.ctf = DeviceRows(self.likelihood.xp, self.images), DeviceRows(self.likelihood.xp, self.ctf)
        return CountingOracle(self.label, self.likelihood, self.prior, self.images, self.ctf, None, 0)


def random_target(box_size: int, r_max_fraction: float, shift_extent: float = 0.0, n_images: int = 400,
                  n_train: int | None = None, label: str | None = None, device: str = "cpu",
                  seed: int = 0) -> OracleTarget:
    """A problem's exact objective configuration (box, band, quadrature) with random band data.

    Timing does not depend on the data's values, so a paper-scale benchmark
    needs neither the simulated stack nor its generation time.
    """
    from problems.model.grids import make_band
    from problems.model.marginal import make_likelihood
    from problems.model.poses import make_quadrature
    from problems.model.prior import DensityPrior
    r_max = r_max_fraction * box_size / 2
    band = make_band(r_max)
    lik = make_likelihood(box_size, band, make_quadrature(r_max, shift_extent=shift_extent), 1.0,
                          device=device)
    rng = np.random.default_rng(seed)
    images = (rng.standard_normal((n_images, band.size))
              + 1j * rng.standard_normal((n_images, band.size))).astype(np.complex64)
    ctf = rng.uniform(-1, 1, (n_images, band.size)).astype(np.float32)
    x = (0.01 * rng.standard_normal((box_size,) * 3)).astype(np.float32)
    label = label or f"random-{box_size}px-{r_max_fraction:g}nyq-shift{shift_extent:g}"
    return OracleTarget(label, lik, DensityPrior(1e-4, 1e-4), images, ctf, x, n_train or n_images)


def bench_oracle(target, batch_size: int = 100, repeats: int = 20, progress: bool = True) -> dict:
    """Time value_and_grad (and value, hvp) on a target's oracle; phase breakdown included.

    ``target``: an :class:`OracleTarget` or a problem (converted with :meth:`OracleTarget.from_problem`).
    """
    from tqdm.auto import tqdm

    if not isinstance(target, OracleTarget):
        target = OracleTarget.from_problem(target)
    rss_before = peak_rss_gib()
    oracle = target.oracle()
    x = target.x
    v = np.random.default_rng(1).standard_normal(x.shape)
    v = (v / np.linalg.norm(v)).astype(np.float32)        # a unit direction, as the curvature estimate's
    lik = target.likelihood
    batches = [oracle.next_batch(batch_size) for _ in range(repeats)]
    oracle.value_and_grad(x, batches[0])                      # warm-up: JIT, caches, allocator
    peak_gemm = gemm_gflops()

    # value_and_grad, value and hvp interleaved batch by batch, so that a load that comes and goes on a
    # shared machine falls on all three alike (the hvp / value_and_grad ratio is a same-run ratio)
    step_times, value_times, hvp_times, timings = [], [], [], {}
    for idx in tqdm(batches, desc="value_and_grad, value, hvp", disable=not progress):
        for fn, out in ((lambda: oracle.value_and_grad(x, idx), step_times), (lambda: oracle.value(x, idx), value_times),
                        (lambda: oracle.hvp(x, v, idx), hvp_times)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    n_prof = max(3, repeats // 4)
    for idx in batches[:n_prof]:
        terms = lik.prepare(target.images[idx], target.ctf[idx])
        lik.nll_and_grad(x, terms, timings=timings)
    phases = {k: v / n_prof for k, v in timings.items()}
    # the rest of an oracle call: validation, batch terms, prior (on a device: fused into the pass)
    device = getattr(lik, "device", "cpu")
    sync = (lambda: None) if device == "cpu" else (lambda: synchronize(lik.xp))
    t = time.perf_counter()
    for idx in batches[:n_prof]:
        lik.prepare(target.images[idx], target.ctf[idx])
    sync()
    phases["batch terms"] = (time.perf_counter() - t) / n_prof
    if device == "cpu":
        grad = np.zeros_like(x)
        t = time.perf_counter()
        for _ in range(n_prof):           # what the oracle does: one fused pass, value and gradient
            target.prior.value_and_accumulate_grad(x, grad, 1.0 / target.n_train)
        phases["prior"] = (time.perf_counter() - t) / n_prof

    value_t, hvp_t = float(np.median(value_times)), float(np.median(hvp_times))
    step = float(np.median(step_times))
    flops = lik.gemm_flops(batch_size)
    gemm_time = phases.get("forward GEMM", np.nan) + phases.get("backward GEMM", np.nan)
    peak_after = peak_rss_gib()
    quad = lik.quadrature
    return {
        "problem": target.label, "batch_size": batch_size, "device": device,
        "band_coefficients": lik.band.size, "poses": quad.size, "rotations": quad.n_rotations,
        "shifts": quad.n_shifts, "slices_extracted": quad.n_base,
        "ms_per_step": step * 1e3, "images_per_s": batch_size / step,
        "seconds_per_epoch": step * target.n_train / batch_size,
        "gemm_gflop_per_step": flops / 1e9,
        "gemm_phase_gflops": flops / gemm_time / 1e9,
        "overall_gflops": flops / step / 1e9,
        "numpy_sgemm_gflops": peak_gemm,
        "gemm_phase_ratio": flops / gemm_time / 1e9 / peak_gemm,
        "overall_ratio": flops / step / 1e9 / peak_gemm,
        "value_ms": value_t * 1e3, "hvp_ms": hvp_t * 1e3,
        "hvp_over_grad": float(np.median(np.asarray(hvp_times) / np.asarray(step_times))),
        "phases_ms": {k: v * 1e3 for k, v in phases.items()},
        "peak_rss_gib": peak_after, "peak_rss_before_gib": rss_before,
    }


def shift_profile(box_size: int, r_max_fraction: float, shift_extent: float, batch_size: int = 100,
                  repeats: int = 6, device: str = "cpu") -> dict:
    """value_and_grad with and without shifts at the same band, alternated in one process.

    Same rotations in both, so ``ratio = t(shifts) / t(no shifts)`` is the cost
    of the shift dimension per pose-rotation; ``per_pose`` divides it by the
    number of shifts (1 would be linear scaling).
    """
    targets = {name: random_target(box_size, r_max_fraction, ext, n_images=batch_size, device=device)
               for name, ext in (("no shifts", 0.0), ("shifts", shift_extent))}
    oracles = {k: t.oracle() for k, t in targets.items()}
    idx = np.arange(batch_size)
    times = {k: [] for k in targets}
    for name, o in oracles.items():
        o.value_and_grad(targets[name].x, idx)
    for _ in range(repeats):
        for name, o in oracles.items():
            t = time.perf_counter()
            o.value_and_grad(targets[name].x, idx)
            times[name].append(time.perf_counter() - t)
    phases = {}
    for name, tg in targets.items():
        timings = {}
        terms = tg.likelihood.prepare(tg.images[idx], tg.ctf[idx])
        for _ in range(3):
            tg.likelihood.nll_and_grad(tg.x, terms, timings=timings)
        phases[name] = {k: v / 3 * 1e3 for k, v in timings.items()}
    ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    n_shift = targets["shifts"].likelihood.quadrature.n_shifts
    return {"box_size": box_size, "r_max_fraction": r_max_fraction, "shift_extent": shift_extent,
            "n_shifts": n_shift, "rotations": targets["shifts"].likelihood.quadrature.n_rotations,
            "band_coefficients": targets["shifts"].likelihood.band.size, "ms": ms,
            "ratio": ms["shifts"] / ms["no shifts"], "per_pose": ms["shifts"] / ms["no shifts"] / n_shift,
            "gemm_flop_ratio": (targets["shifts"].likelihood.gemm_flops(batch_size)
                                / targets["no shifts"].likelihood.gemm_flops(batch_size)),
            "phases_ms": phases}


def format_shift_profile(r: dict) -> str:
    lines = [f"shift dimension: {r['box_size']} px, {r['r_max_fraction']:g} Nyquist (D = {r['band_coefficients']}), "
             f"{r['rotations']} rotations, {r['n_shifts']} shifts (extent {r['shift_extent']:g} px), one run",
             f"  value_and_grad without shifts {r['ms']['no shifts']:9.1f} ms/step",
             f"  value_and_grad with shifts    {r['ms']['shifts']:9.1f} ms/step",
             f"  ratio per pose-rotation       {r['ratio']:9.2f}x  (target <= 10x; GEMM flop ratio "
             f"{r['gemm_flop_ratio']:.2f}x; {r['per_pose']:.2f}x per pose)",
             "  phases (ms):        " + "".join(f"{k:>14}" for k in r["phases_ms"])]
    names = list(r["phases_ms"]["shifts"])
    for name in names:
        lines.append(f"    {name:<18}" + "".join(f"{r['phases_ms'][k].get(name, 0.0):14.2f}" for k in r["phases_ms"]))
    return "\n".join(lines)


def format_report(r: dict) -> str:
    lines = [
        f"oracle benchmark: {r['problem']} on {r['device']}, batch {r['batch_size']}, D = {r['band_coefficients']} "
        f"band coefficients, M = {r['poses']} poses = {r['rotations']} rotations x {r['shifts']} shifts "
        f"({r['slices_extracted']} slices extracted per step)",
        f"  value_and_grad        {r['ms_per_step']:8.1f} ms/step   {r['images_per_s']:8.0f} images/s",
        f"  projected epoch       {r['seconds_per_epoch']:8.1f} s",
        f"  value                 {r['value_ms']:8.1f} ms/step   hvp {r['hvp_ms']:.1f} ms/step "
        f"({r['hvp_over_grad']:.2f}x value_and_grad)",
        f"  GEMM work             {r['gemm_gflop_per_step']:8.2f} GFLOP/step",
        f"  GEMM phase            {r['gemm_phase_gflops']:8.1f} GFLOP/s",
        f"  whole step            {r['overall_gflops']:8.1f} GFLOP/s (GEMM flops / step time)",
        f"  numpy sgemm (2048^2)  {r['numpy_sgemm_gflops']:8.1f} GFLOP/s   (same run)",
        f"  ratio GEMM phase / sgemm   {r['gemm_phase_ratio']:.2f}",
        f"  ratio whole step / sgemm   {r['overall_ratio']:.2f}",
        f"  peak memory (RSS)     {r['peak_rss_gib']:8.2f} GiB  (after loading data: {r['peak_rss_before_gib']:.2f} GiB)",
        "  phase breakdown (ms per value_and_grad):",
    ]
    total = sum(r["phases_ms"].values())
    for name, ms in r["phases_ms"].items():
        lines.append(f"    {name:<18} {ms:8.2f}  {100 * ms / total:5.1f}%")
    return "\n".join(lines)
