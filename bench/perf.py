"""Oracle throughput against the same run's matrix-product peak (``cryoopt bench oracle``).

Every speed claim of the project is a ratio measured in one run: the
machines are shared and noisy, absolute numbers drift, ratios much less.
"""
from __future__ import annotations

import resource
import time

import numpy as np


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


def bench_oracle(problem, batch_size: int = 100, repeats: int = 20, progress: bool = True) -> dict:
    """Time value_and_grad (and value, hvp) on the problem's oracle; phase breakdown included."""
    from tqdm.auto import tqdm

    rss_before = peak_rss_gib()
    oracle = problem.oracle()
    x = problem.initial_density(0)
    v = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    lik = problem.likelihood()
    batches = [oracle.next_batch(batch_size) for _ in range(repeats)]
    oracle.value_and_grad(x, batches[0])                      # warm-up: JIT, caches, allocator
    peak_gemm = gemm_gflops()

    step_times, timings = [], {}
    for idx in tqdm(batches, desc="value_and_grad", disable=not progress):
        t = time.perf_counter()
        oracle.value_and_grad(x, idx)
        step_times.append(time.perf_counter() - t)
    for idx in batches[: max(3, repeats // 4)]:
        terms = lik.prepare(problem._train[0][idx], problem._train[1][idx])
        lik.nll_and_grad(x, terms, timings=timings)
    n_prof = max(3, repeats // 4)
    phases = {k: v / n_prof for k, v in timings.items()}
    # the rest of an oracle call: validation, batch terms, prior
    t = time.perf_counter()
    for idx in batches[:n_prof]:
        lik.prepare(problem._train[0][idx], problem._train[1][idx])
    phases["batch terms"] = (time.perf_counter() - t) / n_prof
    t = time.perf_counter()
    for _ in range(n_prof):
        problem.prior.grad(x), problem.prior.value(x)
    phases["prior"] = (time.perf_counter() - t) / n_prof

    value_t = _median_time(lambda idx: oracle.value(x, idx), batches[:5])
    hvp_t = _median_time(lambda idx: oracle.hvp(x, v, idx), batches[:5])
    step = float(np.median(step_times))
    flops = lik.gemm_flops(batch_size)
    gemm_time = phases["forward GEMM"] + phases["backward GEMM"]
    peak_after = peak_rss_gib()
    return {
        "problem": f"{problem.name}-{problem.metadata.get('scale')}", "batch_size": batch_size,
        "band_coefficients": problem.band.size, "poses": problem.quadrature.size,
        "slices_extracted": problem.quadrature.n_base,
        "ms_per_step": step * 1e3, "images_per_s": batch_size / step,
        "seconds_per_epoch": step * problem.n_train / batch_size,
        "gemm_gflop_per_step": flops / 1e9,
        "gemm_phase_gflops": flops / gemm_time / 1e9,
        "overall_gflops": flops / step / 1e9,
        "numpy_sgemm_gflops": peak_gemm,
        "gemm_phase_ratio": flops / gemm_time / 1e9 / peak_gemm,
        "overall_ratio": flops / step / 1e9 / peak_gemm,
        "value_ms": value_t * 1e3, "hvp_ms": hvp_t * 1e3,
        "phases_ms": {k: v * 1e3 for k, v in phases.items()},
        "peak_rss_gib": peak_after, "peak_rss_before_gib": rss_before,
    }


def _median_time(fn, batches) -> float:
    times = []
    for idx in batches:
        t = time.perf_counter()
        fn(idx)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def format_report(r: dict) -> str:
    lines = [
        f"oracle benchmark: {r['problem']}, batch {r['batch_size']}, D = {r['band_coefficients']} band "
        f"coefficients, M = {r['poses']} poses ({r['slices_extracted']} slices extracted per step)",
        f"  value_and_grad        {r['ms_per_step']:8.1f} ms/step   {r['images_per_s']:8.0f} images/s",
        f"  projected epoch       {r['seconds_per_epoch']:8.1f} s",
        f"  value                 {r['value_ms']:8.1f} ms/step   hvp {r['hvp_ms']:.1f} ms/step",
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
