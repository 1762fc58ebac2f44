"""The device check (``cryoopt bench device``): correctness and speed of a device in one command.

1. Agreement: every oracle call (value, value_and_grad, hvp, soft and hard
   E-step sums, the M-step objective, posteriors) and the held-out NLLs
   (test, scoring) on the device against the CPU path, in float32 and
   float64, at the tiny and small scales of the problems available.
2. Precision: a float32 product's relative error against float64 on the
   device (TF32 would show ~3e-4; full float32 ~1e-6).
3. Speed: paper-scale steps (value_and_grad, value, hvp, the transfer share
   and the phases) on the synthetic and realistic paper geometries with
   random band data (step time does not depend on the values), each as a
   ratio to the same run's float32 matrix-product rate at the pose-product
   shape (``2 n_shift B x D`` by ``D x n_base``).
4. Snapshot alignment: :func:`bench.score.metrics.compare_to_truth` of a
   rotated, shifted, mirrored copy of the last checked problem's ground
   truth on the device against the CPU path, timed in the same run (the
   alignment and FSC that the runner does per snapshot).
5. Data generation: realistic-paper images (6ZU5 pseudo-atoms, 128 px,
   exact slices, CTF, shifts, noise; no disk) on the device and on the CPU
   path in the same run, as images/s and the projected 46,100 images.
6. A reduced Fig. 3: one epoch per method on a problem, on the device.

Writes one markdown report.  ``--device numpy`` runs the whole check on
the CPU (the dry run before spending GPU time).
"""
from __future__ import annotations

import platform
import time

import numpy as np

from problems.model.devices import PRECISION, array_module, synchronize, to_host

PAPER_GEOMETRIES = {"synthetic-paper": (128, 0.10, 0.0, 50000), "realistic-paper": (128, 0.16, 2.0, 46000)}
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-3}


def matmul_rate(xp, m: int, k: int, n: int, repeats: int = 10) -> float:
    """Median float32 ``(m x k) @ (k x n)`` rate on ``xp``'s device, GFLOP/s (random data, warmed up)."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((m, k), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((k, n), dtype=np.float32))
    c = a @ b
    times = []
    for _ in range(repeats):
        synchronize(xp)
        t = time.perf_counter()
        c = a @ b
        synchronize(xp)
        times.append(time.perf_counter() - t)
    del c
    return 2.0 * m * k * n / float(np.median(times)) / 1e9


def float32_product_error(xp, size: int = 1024) -> float:
    """``||A B - (A B)_64|| / ||(A B)_64||`` of a float32 product on the device (TF32 ~3e-4)."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((size, size)) for _ in range(2))
    exact = a @ b
    got = to_host(xp.asarray(a, dtype=np.float32) @ xp.asarray(b, dtype=np.float32)).astype(np.float64)
    return float(np.linalg.norm(got - exact) / np.linalg.norm(exact))


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _calls(problem, dtype, x, v, idx) -> dict:
    """Every call's output on the problem's current device."""
    oracle = problem.oracle(dtype=dtype)
    lik = problem.likelihood(dtype)
    f, g = oracle.value_and_grad(x, idx)
    soft, hard = oracle.expectation(x, idx), oracle.expectation(x, idx, hard=True)
    q, q_grad = lik.complete_data_objective(x, soft.za, soft.zq, idx.size)
    terms = lik.prepare(problem._train[0][idx], problem._train[1][idx])
    out = {"value": oracle.value(x, idx), "value_and_grad: f": f, "value_and_grad: g": g,
           "hvp": oracle.hvp(x, v, idx), "E-step za": soft.za, "E-step zq": soft.zq,
           "hard E-step za": hard.za, "M-step objective": q, "M-step gradient": q_grad,
           "posterior": lik.posterior(x, terms)[0]}
    if dtype == np.float32:
        out["test NLL"] = problem.test_nll(x, per_image=True)
        if problem.n_score:
            out["scoring NLL"] = problem.score_nll(x, per_image=True)
    return out


def agreement(device: str, problems=(("synthetic", "tiny"), ("synthetic", "small"), ("realistic", "tiny"),
                                     ("realistic", "small")), batch: int = 100, progress: bool = False) -> list[dict]:
    """Relative differences device vs CPU path, one row per problem, call and precision."""
    from problems import load_problem
    rows = []
    for name, scale in problems:
        t0 = time.perf_counter()
        try:
            problem = load_problem(name, scale=scale, progress=progress)
        except Exception as exc:          # e.g. the realistic model is not available offline
            rows.append({"problem": f"{name}-{scale}", "call": "(load)", "dtype": "-", "error": np.nan,
                         "ok": False, "note": f"{exc.__class__.__name__}: {exc}"[:160]})
            continue
        load_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        x = problem.initial_density(0)
        v = rng.standard_normal(x.shape).astype(np.float32)
        idx = np.arange(min(batch, problem.n_train))
        for dtype in (np.float64, np.float32):
            problem.use_device("cpu")
            ref = _calls(problem, dtype, x, v, idx)
            problem.use_device(device)
            got = _calls(problem, dtype, x, v, idx)
            problem.use_device("cpu")
            for call in ref:
                err = _rel(got[call], ref[call])
                rows.append({"problem": f"{name}-{scale}", "call": call, "dtype": np.dtype(dtype).name,
                             "error": err, "ok": bool(err <= TOLERANCE[np.dtype(dtype)]),
                             "note": f"load {load_s:.1f} s"})
    return rows


def step_times(device: str, batch: int = 100, repeats: int = 10, geometries: dict | None = None) -> list[dict]:
    """Paper-geometry step times on ``device`` with the same run's matrix-product rate at the pose shape."""
    from .perf import bench_oracle, random_target
    xp = None if device == "cpu" else array_module(device)
    out = []
    for label, (box, frac, shift, n_train) in (geometries or PAPER_GEOMETRIES).items():
        t0 = time.perf_counter()
        target = random_target(box, frac, shift, n_images=batch * repeats, n_train=n_train, device=device,
                               label=f"{label} (random band data)")
        setup_s = time.perf_counter() - t0
        r = bench_oracle(target, batch_size=batch, repeats=repeats, progress=False)
        quad, d = target.likelihood.quadrature, target.likelihood.band.size
        shape = (2 * quad.n_shifts * batch, d, quad.n_base)
        rate = matmul_rate(xp, *shape) if xp is not None else r["numpy_sgemm_gflops"]
        floor_ms = r["gemm_gflop_per_step"] / rate * 1e3
        phases = r["phases_ms"]
        transfer = phases.get("transfer x", 0.0) + phases.get("transfer f, g", 0.0)
        out.append({**r, "setup_s": setup_s, "pose_shape": shape, "matmul_gflops": rate,
                    "product_floor_ms": floor_ms, "floor_over_step": floor_ms / r["ms_per_step"],
                    "transfer_share": transfer / sum(phases.values())})
    return out


def alignment_check(device: str, name: str, scale: str, seed: int = 0) -> dict:
    """Snapshot alignment on ``device`` against the CPU path, same run (part 4 of the module docstring)."""
    from scipy.spatial.transform import Rotation

    from problems import load_problem

    from bench.score.metrics import _rotate, compare_to_truth, fourier_shift
    problem = load_problem(name, scale=scale, progress=False)
    truth = problem.ground_truth
    rng = np.random.default_rng(seed)
    moved = fourier_shift(_rotate(np.asarray(truth[::-1], float), Rotation.random(random_state=rng).as_matrix()),
                          rng.uniform(-3, 3, 3)).astype(np.float32)
    args = (moved, truth, problem.metadata["pixel_size_angstrom"], problem.band.r_max)
    out = {"problem": f"{name}-{scale}"}
    for dev in ("cpu", device):
        t = time.perf_counter()
        out[dev] = compare_to_truth(*args, device=dev)
        out[f"{dev}_s"] = time.perf_counter() - t
    ref, got = out.pop("cpu"), out.pop(device)
    turn = Rotation.from_matrix(np.asarray(got["rotation"]) @ np.asarray(ref["rotation"]).T).magnitude()
    return {**out, "device_s": out.pop(f"{device}_s"), "angle_deg": float(np.degrees(turn)),
            "fsc_max_diff": float(np.max(np.abs(np.subtract(got["fsc"], ref["fsc"])))),
            "hands_agree": got["mirrored"] == ref["mirrored"], "fsc_band_mean": got["fsc_band_mean"]}


def generation_rate(device: str, n_device: int = 4096, n_cpu: int = 512) -> dict:
    """Realistic-paper image simulation on ``device`` and on the CPU path, same run (part 5)."""
    from scipy.spatial.transform import Rotation

    from problems.catalog.realistic import realistic_spec
    from problems.data.atomic_models import model_mixture, model_path
    from problems.data.simulate import ctf_from_physical, exact_images, random_ctf, random_shifts
    spec = realistic_spec("paper")
    rng = np.random.default_rng(0)
    mixture = model_mixture(model_path(spec.model), spec.box_size, spec.pixel_size)
    n = max(n_device, n_cpu)
    rot = Rotation.random(n, random_state=rng).as_matrix()
    shifts = random_shifts(rng, n, spec.shift_sigma, spec.shift_extent)
    ctf = ctf_from_physical(random_ctf(spec, rng, n), spec.pixel_size)
    out = {"components": mixture.size}
    for dev, count in (("cpu", n_cpu), (device, n_device)):
        w = min(64, count)
        for _ in exact_images(mixture, rot[:w], shifts[:w], ctf.subset(slice(0, w)), spec.box_size, 1.0,
                              None, device=dev):
            pass                                                      # compiles / warms up
        t = time.perf_counter()
        for _ in exact_images(mixture, rot[:count], shifts[:count], ctf.subset(slice(0, count)), spec.box_size,
                              1.0, np.random.default_rng(1), device=dev):
            pass
        out[f"{'cpu' if dev == 'cpu' else 'device'}_images_per_s"] = count / (time.perf_counter() - t)
    out["device_projected_s"] = spec.n_images / out["device_images_per_s"]
    return out


def reduced_fig3(device: str, name: str = "realistic", scale: str = "small", results_dir: str = "results",
                 budget: str = "1epoch", seconds: float = float("inf")) -> list[dict]:
    """One epoch per method of the paper's seven, default hyperparameters, on ``device``; methods
    not started within ``seconds`` are listed as skipped."""
    from optimizers import PAPER_SEVEN
    from problems import load_problem

    from bench.run.runner import run
    start = time.perf_counter()
    problem = load_problem(name, scale=scale, progress=False, device=device)
    x0 = problem.initial_density(0)
    rows = [{"method": "initial density", "test_nll": problem.test_nll(x0), "wall_s": 0.0, "outcome": "-"}]
    for method in PAPER_SEVEN:
        if time.perf_counter() - start > seconds:
            rows.append({"method": method, "test_nll": np.nan, "wall_s": 0.0, "outcome": "skipped (time)"})
            continue
        t = time.perf_counter()
        res = run(problem, method, budget=budget, results_dir=results_dir, progress=False, force=True)
        rows.append({"method": method, "test_nll": np.nan if res.final_test_nll is None else res.final_test_nll,
                     "wall_s": time.perf_counter() - t, "outcome": res.status})
    return rows


def device_name(device: str) -> str:
    if device != "cuda":
        return f"{device} ({platform.processor() or platform.machine()})"
    import cupy
    try:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:  # naming the card must not stop the check
        name = f"unnamed GPU ({exc.__class__.__name__})"
    return f"cuda: {name}, CuPy {cupy.__version__}"


def run_check(device: str, problems, fig3_problem: tuple[str, str] | None, geometries: dict | None = None,
              fig3_seconds: float = float("inf"), on_part=None, generation: dict | None = None) -> dict:
    """All four parts (module docstring); each part's wall time is recorded and ``on_part(report)``
    is called after each (to write what is done so far).  The Fig. 3 runs' records go to a
    temporary folder (the report keeps their results)."""
    import tempfile
    xp = array_module(device)
    report = {"device": device_name(device), "agreement": [], "steps": [], "clock": {}}
    clock = report["clock"]
    done = on_part or (lambda r: None)
    t = time.perf_counter()
    report["float32_product_error"] = float32_product_error(xp)
    report["precision"] = PRECISION.get(device, "")
    for problem in problems:
        report["agreement"] += agreement(device, [problem])
        clock["agreement"] = time.perf_counter() - t
        done(report)
    if problems:
        t = time.perf_counter()
        try:
            report["alignment"] = alignment_check(device, *problems[-1])
        except Exception as exc:         # a problem that cannot load is already reported in part 1
            report["alignment"] = {"problem": "-".join(problems[-1]), "error": f"{exc.__class__.__name__}: {exc}"}
        clock["snapshot alignment"] = time.perf_counter() - t
        done(report)
    t = time.perf_counter()
    try:
        report["generation"] = generation_rate(device, **(generation or {}))
    except Exception as exc:             # e.g. the atomic model is not available offline
        report["generation"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    clock["data generation"] = time.perf_counter() - t
    done(report)
    t = time.perf_counter()
    report["steps"] = step_times(device, geometries=geometries)
    clock["paper-scale steps"] = time.perf_counter() - t
    done(report)
    if fig3_problem:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            report["fig3"] = reduced_fig3(device, *fig3_problem, results_dir=tmp, seconds=fig3_seconds)
        report["fig3_problem"] = "-".join(fig3_problem)
        clock["reduced Fig. 3"] = time.perf_counter() - t
        done(report)
    return report


def format_markdown(r: dict) -> str:
    """The report as one markdown document."""
    lines = [f"# Device check: {r['device']}", "",
             f"float32 product error against float64 (1024^3, random): {r['float32_product_error']:.2e} "
             f"(TF32 would give ~3e-4). Reduced precision off by: {r['precision']}.", "",
             "## Agreement with the CPU path", "",
             f"Relative difference device vs CPU path (tolerance float64 {TOLERANCE[np.dtype(np.float64)]:g}, "
             f"float32 {TOLERANCE[np.dtype(np.float32)]:g}).", "",
             "| problem | call | dtype | rel. difference | ok |", "|---|---|---|---:|---|"]
    for row in r["agreement"]:
        err = "n/a" if np.isnan(row["error"]) else f"{row['error']:.1e}"
        lines.append(f"| {row['problem']} | {row['call']} | {row['dtype']} | {err} | "
                     f"{'yes' if row['ok'] else 'NO ' + row.get('note', '')} |")
    n_bad = sum(not row["ok"] for row in r["agreement"])
    lines += ["", f"{len(r['agreement']) - n_bad} of {len(r['agreement'])} rows within tolerance.", "",
              "## Paper-scale steps (random band data, batch 100)", "",
              "| geometry | D | poses | value_and_grad ms | value ms | hvp ms | transfer share | "
              "pose-shape matmul GFLOP/s | product floor ms | floor / step | epoch s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r["steps"]:
        lines.append(f"| {s['problem']} | {s['band_coefficients']} | {s['poses']:,} | {s['ms_per_step']:.2f} | "
                     f"{s['value_ms']:.2f} | {s['hvp_ms']:.2f} | {100 * s['transfer_share']:.0f}% | "
                     f"{s['matmul_gflops']:.0f} | {s['product_floor_ms']:.2f} | {s['floor_over_step']:.2f} | "
                     f"{s['seconds_per_epoch']:.1f} |")
    for s in r["steps"]:
        lines += ["", f"Phases of `{s['problem']}` (ms per value_and_grad, synchronised): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in s["phases_ms"].items())
                  + f"; pose-product shape {s['pose_shape']}."]
    a = r.get("alignment")
    if a:
        lines += ["", f"## Snapshot alignment: {a['problem']} (moved, mirrored copy of the truth)", ""]
        lines.append(f"Error: {a['error']}" if "error" in a else
                     f"CPU path {a['cpu_s']:.1f} s, device {a['device_s']:.1f} s (ratio "
                     f"{a['cpu_s'] / a['device_s']:.2f}); rotation {a['angle_deg']:.2g} deg from the CPU's, FSC "
                     f"max |diff| {a['fsc_max_diff']:.1e}, hands {'agree' if a['hands_agree'] else 'DIFFER'}; "
                     f"mean in-band FSC {a['fsc_band_mean']:.4f}.")
    g = r.get("generation")
    if g:
        lines += ["", "## Data generation: realistic-paper images (no disk)", "",
                  f"Error: {g['error']}" if "error" in g else
                  f"{g['components']:,} Gaussians: device {g['device_images_per_s']:.0f} images/s (46,100 images "
                  f"in {g['device_projected_s']:.0f} s projected), CPU path {g['cpu_images_per_s']:.0f} images/s "
                  f"(ratio {g['device_images_per_s'] / g['cpu_images_per_s']:.1f}); target <= 60 s on a GPU."]
    if "fig3" in r:
        lines += ["", f"## Reduced Fig. 3: {r['fig3_problem']}, one epoch per method, default hyperparameters", "",
                  "| method | test NLL | wall s | status |", "|---|---:|---:|---|"]
        lines += [f"| {f['method']} | {f['test_nll']:.4f} | {f['wall_s']:.1f} | {f['outcome']} |" for f in r["fig3"]]
    lines += ["", "Wall time per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["clock"].items()), ""]
    return "\n".join(lines)
