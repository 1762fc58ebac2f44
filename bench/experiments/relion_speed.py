"""Same-sampling speed comparison with RELION 3.1's E-step (``cryoopt bench relion``).

One particle stack (RELION 3.1 STAR + MRCS), one band (a fraction of
Nyquist), one sampling: ``healpix_order`` directions x ``psi`` in-plane angles
x the integer offsets within ``offset_range`` pixels.  Both sides run in one
script on this machine:

* RELION: ``relion_refine`` for one iteration, ``--oversampling 0`` (exactly
  the coarse sampling, no adaptive second pass), the reference low-passed
  to the band (``--ini_high``) and ``--incr_size 0`` (by default RELION
  adds 10 Fourier shells beyond the current resolution: 3x the band's
  radius here), ``--j`` threads; its E-step image size is read back from
  the run's model STAR.  A run's wall time includes
  start-up, the initial noise estimate and the M-step, so it is run on two
  particle counts and the per-particle E-step cost is the difference of the
  times over the difference of the counts.
* ours: the exhaustive marginal likelihood over a quadrature with the same
  in-plane count and offsets and the nearest Lebedev direction count
  (:func:`problems.model.poses.make_quadrature`), value_and_grad and the
  E-step sums (``expectation``) on the same images at batch 100.

The ratio is per particle and per pose sample (the direction counts differ
by a few percent).
"""
from __future__ import annotations

import resource
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np


def relion_rotations(healpix_order: int) -> tuple[int, int]:
    """RELION's 3D coarse sampling at ``healpix_order``: (HEALPix directions, psi angles).

    ``12 * 4^order`` directions and in-plane steps of the same angle
    (``60 / 2^order`` degrees, i.e. ``6 * 2^order`` angles).
    """
    return 12 * 4**healpix_order, 6 * 2**healpix_order


def offset_count(offset_range: float, offset_step: float = 1.0) -> int:
    """Integer-grid offsets within a disc of ``offset_range`` (RELION's circular offset search)."""
    r = int(np.floor(offset_range / offset_step))
    g = np.arange(-r, r + 1) * offset_step
    return int(((g[:, None] ** 2 + g[None, :] ** 2) <= offset_range**2 + 1e-9).sum())


def subset_star(star: Path, n: int, out: Path) -> Path:
    """The first ``n`` particles of a RELION 3.1 STAR file, image paths made absolute."""
    import starfile
    blocks = starfile.read(star, always_dict=True)
    parts = blocks["particles"].iloc[:n].copy()

    def absolute(name: str) -> str:
        index, path = name.split("@", 1)
        return f"{index}@{(star.parent / path).resolve()}"

    parts["rlnImageName"] = parts["rlnImageName"].map(absolute)
    starfile.write({"optics": blocks["optics"], "particles": parts}, out, overwrite=True)
    return out


def run_relion_once(star: Path, reference: Path, out_dir: Path, *, ini_high: float, diameter: float,
                    healpix_order: int, offset_range: float, offset_step: float, threads: int) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``relion_refine`` iteration (raises with its log on failure)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["relion_refine", "--i", str(star), "--o", str(out_dir / "run"), "--ref", str(reference),
           "--ini_high", f"{ini_high:.2f}", "--iter", "1", "--K", "1", "--tau2_fudge", "1",
           "--particle_diameter", f"{diameter:.1f}", "--healpix_order", str(healpix_order),
           "--offset_range", f"{offset_range:g}", "--offset_step", f"{offset_step:g}", "--oversampling", "0",
           "--ctf", "--sym", "C1", "--zero_mask", "--flatten_solvent", "--dont_combine_weights_via_disc",
           "--incr_size", "0", "--pool", "10", "--j", str(threads), "--random_seed", "0"]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"relion_refine failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return elapsed, cpu


def ours_per_particle(dataset_dir: Path, r_max_fraction: float, healpix_order: int, offset_range: float,
                      batch_size: int = 100, repeats: int = 3) -> dict:
    """Our value_and_grad and E-step per particle on the stack's first images, same sampling."""
    from problems.data.io import read_particles
    from problems.model.ctf import evaluate_ctf
    from problems.model.fourier import image_band_coefficients
    from problems.model.grids import make_band
    from problems.model.marginal import MarginalLikelihood
    from problems.model.poses import make_quadrature

    stack = read_particles(dataset_dir / "particles.star")
    images = next(stack.iter_chunks(batch_size))[1]
    n = images.shape[-1]
    r_max = r_max_fraction * n / 2
    n_dir, n_psi = relion_rotations(healpix_order)
    band = make_band(r_max)
    quad = make_quadrature(r_max, shift_extent=offset_range, min_directions=n_dir, n_psi=n_psi)
    lik = MarginalLikelihood(n, band, quad, 1.0)
    terms = lik.prepare(image_band_coefficients(images, band.k),
                        evaluate_ctf(stack.ctf.subset(slice(0, images.shape[0])), band.k / n))
    x = np.zeros((n, n, n), dtype=np.float32)
    x[n // 4: 3 * n // 4, n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 0.01
    lik.nll_and_grad(x, terms)                                   # JIT and allocator warm-up
    grad_t, estep_t, grad_cpu = [], [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        lik.nll_and_grad(x, terms)
        grad_t.append(time.perf_counter() - t)
        grad_cpu.append(time.process_time() - c)
        t = time.perf_counter()
        lik.expectation(x, terms)
        estep_t.append(time.perf_counter() - t)
    b = images.shape[0]
    return {"box_size": n, "band_coefficients": band.size, "directions": quad.n_dir, "psi": quad.n_psi,
            "shifts": quad.n_shifts, "samples": quad.size,
            "grad_ms_per_particle": 1e3 * float(np.median(grad_t)) / b,
            "estep_ms_per_particle": 1e3 * float(np.median(estep_t)) / b,
            "grad_cpu_ms_per_particle": 1e3 * float(np.median(grad_cpu)) / b}


def compare(dataset_dir: Path, work_dir: Path, *, r_max_fraction: float = 0.16, healpix_order: int = 2,
            offset_range: float = 3.0, offset_step: float = 1.0, n_small: int = 40, n_large: int = 200,
            threads: int = 2) -> dict:
    """Both sides on one stack; RELION's per-particle E-step from two particle counts."""
    import starfile
    if shutil.which("relion_refine") is None:
        raise RuntimeError("relion_refine not found: install RELION 3.1 (Debian/Ubuntu: apt-get install relion)")
    if not n_large > n_small > 0:
        raise ValueError(f"need n_large > n_small > 0, got {n_large}, {n_small}")
    star = dataset_dir / "particles.star"
    optics = starfile.read(star, always_dict=True)["optics"]
    pixel = float(optics["rlnImagePixelSize"].iloc[0])
    box = int(optics["rlnImageSize"].iloc[0])
    ini_high = 2 * pixel / r_max_fraction                     # the band edge in Å
    work_dir.mkdir(parents=True, exist_ok=True)
    times, cpu = {}, {}
    for count in (n_small, n_large):
        sub = subset_star(star, count, work_dir / f"particles_{count}.star")
        times[count], cpu[count] = run_relion_once(sub, dataset_dir / "ground_truth.mrc", work_dir / f"relion_{count}",
                                       ini_high=ini_high, diameter=0.8 * box * pixel,
                                       healpix_order=healpix_order, offset_range=offset_range,
                                       offset_step=offset_step, threads=threads)
    relion_ms = 1e3 * (times[n_large] - times[n_small]) / (n_large - n_small)
    relion_cpu_ms = 1e3 * (cpu[n_large] - cpu[n_small]) / (n_large - n_small)
    model = starfile.read(work_dir / f"relion_{n_large}" / "run_it001_model.star", always_dict=True)
    current_size = int(model["model_general"]["rlnCurrentImageSize"])
    ours = ours_per_particle(dataset_dir, r_max_fraction, healpix_order, offset_range)
    n_dir, n_psi = relion_rotations(healpix_order)
    relion_samples = n_dir * n_psi * offset_count(offset_range, offset_step)
    per_sample = {k: (relion_ms / relion_samples) / (ours[f"{k}_ms_per_particle"] / ours["samples"])
                  for k in ("grad", "estep")}
    per_sample["cpu"] = (relion_cpu_ms / relion_samples) / (ours["grad_cpu_ms_per_particle"] / ours["samples"])
    return {"dataset": str(dataset_dir), "pixel_size_angstrom": pixel, "box_size": box, "ini_high_angstrom": ini_high,
            "relion_runs_s": times, "relion_samples": relion_samples, "relion_current_image_size": current_size,
            "relion_estep_ms_per_particle": relion_ms, "relion_estep_cpu_ms_per_particle": relion_cpu_ms,
            "relion_cpu_s": cpu, "ours": ours, "ratio_cpu_time": per_sample["cpu"],
            "ratio_relion_over_our_grad": per_sample["grad"], "ratio_relion_over_our_estep": per_sample["estep"]}


def format_comparison(r: dict) -> str:
    o = r["ours"]
    runs = ", ".join(f"{n} particles {t:.1f} s" for n, t in r["relion_runs_s"].items())
    return "\n".join([
        f"RELION 3.1 vs ours, one run: {r['dataset']} ({r['box_size']} px at {r['pixel_size_angstrom']:g} A, "
        f"band to {r['ini_high_angstrom']:.1f} A = {o['band_coefficients']} half-plane coefficients)",
        f"  RELION  {r['relion_samples']} samples (rotations x offsets), E-step image size "
        f"{r['relion_current_image_size']} px (Fourier radius {r['relion_current_image_size'] // 2}), runs: {runs}",
        f"          E-step {r['relion_estep_ms_per_particle']:9.2f} ms per particle (difference of the runs), "
        f"CPU {r['relion_estep_cpu_ms_per_particle']:.2f} ms",
        f"  ours    {o['samples']} samples = {o['directions']} directions x {o['psi']} psi x {o['shifts']} shifts",
        f"          value_and_grad {o['grad_ms_per_particle']:9.3f} ms per particle, "
        f"E-step sums {o['estep_ms_per_particle']:9.3f} ms per particle (batch 100); "
        f"value_and_grad CPU {o['grad_cpu_ms_per_particle']:.3f} ms",
        f"  ratio RELION / ours per particle-sample: {r['ratio_relion_over_our_grad']:.1f}x (value_and_grad), "
        f"{r['ratio_relion_over_our_estep']:.1f}x (E-step); CPU time {r['ratio_cpu_time']:.1f}x (value_and_grad; "
        "less sensitive to the machine's load)",
    ])
