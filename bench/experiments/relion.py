"""RELION 3.1 as a Fig. 6 entry: ``relion_refine`` on our own STAR/MRCS stack, scored like every run.

The paper's Fig. 6 compares its stochastic optimizer with the batch methods
of the field's tools.  Here the batch EM of the field's reference
implementation (Debian's ``relion`` 3.1, CPU build) runs on

* the *same particle files* the problem was simulated into (the cache's
  ``particles.star`` + ``particles.mrcs``; :func:`problems.data.cache.dataset_dir`),
  restricted to a seeded random subset of the *training* images (the test
  images are never given to RELION) and with the true pose columns removed;
* the *same initial density* as every other entry (the problem's
  ``initial_density(seed)``, paper Fig. 5), written as MRC;
* 5 iterations of 3D classification with one class (``--K 1``), which is
  RELION's plain EM with global pose search, low-passed to the problem's
  band (``--ini_high``), angular sampling matched to our pose quadrature
  (``--healpix_order``), translations searched over the problem's shift
  extent (``--offset_range``), ``--firstiter_cc`` as RELION needs at low SNR.

Scoring: RELION's output map is on RELION's intensity scale (its own noise
and scale estimates), so one scalar ``a`` is fitted by minimising the mean
NLL of a fixed block of training images (uncharged, never test images);
``a * map`` is then scored by the held-out test NLL and aligned FSC like every
other entry.  The unscaled NLL is kept beside it.

Cost: about 0.05 s per particle per iteration at paper scale on 2 cores
(about 4 h for 5 iterations on 50,000 images), so reproductions run it on a
documented random subset (``n_particles``); the same call with
``n_particles=None`` is the full-set run for larger machines.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import starfile
from scipy.optimize import minimize_scalar

from problems.data.io import read_mrc, write_mrc

POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                "rlnOriginX", "rlnOriginY")


def available() -> bool:
    return shutil.which("relion_refine") is not None


def healpix_order(r_max: float) -> int:
    """RELION's HEALPix order whose angular step (60 / 2^h degrees) is at most our quadrature's
    (about ``1 / r_max`` radians)."""
    step = math.degrees(1.0 / r_max)
    return max(1, math.ceil(math.log2(60.0 / step)))


def subset_star(dataset_dir: Path, train_indices: np.ndarray, out: Path) -> Path:
    """A STAR file of the given rows of the dataset's STAR (pose columns dropped), its image names
    pointing at the original stack by absolute path."""
    star = starfile.read(dataset_dir / "particles.star", always_dict=True)
    particles = star["particles"].iloc[np.sort(train_indices)].reset_index(drop=True)
    particles = particles.drop(columns=[c for c in POSE_COLUMNS if c in particles.columns])

    def absolute(name: str) -> str:
        index, _, stack = name.partition("@")
        return f"{index}@{(dataset_dir / stack).resolve()}"

    particles["rlnImageName"] = particles["rlnImageName"].map(absolute)
    out.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"optics": star["optics"], "particles": particles}, out, overwrite=True)
    return out


def command(star: Path, reference: Path, out_stem: Path, *, ini_high: float, particle_diameter: float,
            healpix: int, offset_range: float, iterations: int = 5, threads: int = 2, seed: int = 0) -> list[str]:
    """The ``relion_refine`` command line (lengths in Å, offsets in pixels)."""
    return ["relion_refine", "--i", str(star), "--o", str(out_stem), "--ref", str(reference),
            "--ini_high", f"{ini_high:.2f}", "--firstiter_cc", "--iter", str(iterations), "--K", "1",
            "--tau2_fudge", "1", "--particle_diameter", f"{particle_diameter:.1f}", "--healpix_order", str(healpix),
            "--offset_range", f"{offset_range:g}", "--offset_step", "1", "--ctf", "--sym", "C1", "--zero_mask",
            "--flatten_solvent", "--pad", "2", "--oversampling", "1", "--dont_combine_weights_via_disc",
            "--pool", "30", "--j", str(threads), "--random_seed", str(seed)]


def fit_scale(problem, volume: np.ndarray, n_images: int = 500) -> float:
    """``argmin_a`` of the mean NLL of the first ``n_images`` training images at ``a * volume``
    (harness side: an unbudgeted oracle; the test images are not used)."""
    oracle = problem.oracle(budget=None)
    idx = np.arange(min(n_images, problem.n_train))
    vol = np.asarray(volume, dtype=np.float32)
    ref = float(np.sqrt(np.mean(problem.initial_density(0) ** 2)) / (np.sqrt(np.mean(vol**2)) + 1e-30))
    res = minimize_scalar(lambda log_a: oracle.value((np.exp(log_a) * ref * vol).astype(np.float32), idx),
                          bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x) * ref)


#: RELION 3.1's CPU build on 2 cores at paper scale (128 px, healpix order 3): seconds per particle and iteration
SECONDS_PER_PARTICLE_ITERATION = 0.05


#: RELION's fixed cost per iteration (start-up, reconstruction): ~25 s per iteration measured at tiny scale
#: (24 px, 100 particles: 127 s for 5 iterations, shared 2-core machine at load 12)
SECONDS_PER_ITERATION = 20.0


def expected_seconds(n_particles: int, iterations: int, box: int) -> float:
    """A rough wall time for :func:`run_relion`: a fixed cost per iteration plus the measured paper-scale
    rate per particle, scaled by the box's area (paper, 1,000 particles: 350 s predicted, 256 s measured)."""
    return iterations * (SECONDS_PER_ITERATION + SECONDS_PER_PARTICLE_ITERATION * n_particles * (box / 128) ** 2)


def _run_with_progress(cmd: list[str], work_dir: Path, iterations: int, what: str, timeout: float | None):
    """Run RELION, with a progress bar over its iterations (it writes ``run_itNNN_class001.mrc`` after each)."""
    from tqdm.auto import tqdm
    with open(work_dir / "relion.out", "w+") as out, open(work_dir / "relion.err", "w+") as err, \
            tqdm(total=iterations, desc=what, unit="iteration") as bar:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=work_dir)
        t0 = time.monotonic()
        while proc.poll() is None:
            if timeout is not None and time.monotonic() - t0 > timeout:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(cmd, timeout)
            done = sum((work_dir / f"run_it{i:03d}_class001.mrc").exists() for i in range(1, iterations + 1))
            bar.update(done - bar.n)
            time.sleep(1.0)
        bar.update(iterations - bar.n if proc.returncode == 0 else 0)
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def run_relion(problem, dataset_dir: Path, test_indices: np.ndarray, work_dir: Path, *, n_particles: int | None,
               seed: int = 0, iterations: int = 5, threads: int = 2, timeout: float | None = None) -> dict:
    """Run RELION on a random subset of the training images and return its map and scores.

    ``test_indices``: the stack's held-out rows (:func:`dataset_files`: test and scoring images),
    never given to RELION.

    Returns a dict with ``map`` (the scaled output density), ``scale``,
    ``test_nll``, ``test_nll_unscaled``, ``n_particles``, ``seconds``,
    ``command`` (a string; with ``n_particles=None`` it is the full-set run)
    and ``log`` (the tail of RELION's output).
    """
    if not available():
        raise RuntimeError("relion_refine not found: install RELION 3.1 (Debian/Ubuntu: apt-get install relion)")
    work_dir = Path(work_dir).resolve()          # RELION runs with cwd=work_dir: relative paths would double
    work_dir.mkdir(parents=True, exist_ok=True)
    n_rows = len(starfile.read(Path(dataset_dir) / "particles.star", always_dict=True)["particles"])
    train = np.setdiff1d(np.arange(n_rows), test_indices)
    if len(train) != problem.n_train:
        raise ValueError(f"{dataset_dir}: {n_rows} images minus {len(test_indices)} held out is {len(train)}, "
                         f"but the problem trains on {problem.n_train}")
    n = len(train) if n_particles is None else min(int(n_particles), len(train))
    chosen = np.random.default_rng([seed, 0x2E110]).choice(train, n, replace=False) if n < len(train) else train
    star = subset_star(dataset_dir, chosen, work_dir / "subset.star")
    pixel = float(problem.metadata["pixel_size_angstrom"])
    reference = work_dir / "initial_density.mrc"
    write_mrc(reference, problem.initial_density(seed), pixel)
    box = problem.box_size
    cmd = command(star, reference, work_dir / "run", ini_high=float(problem.metadata["resolution_angstrom"]),
                  particle_diameter=0.9 * box * pixel, healpix=healpix_order(problem.band.r_max),
                  offset_range=float(problem.metadata.get("shift_extent", 0.0)), iterations=iterations,
                  threads=threads, seed=seed)
    t0 = time.perf_counter()
    proc = _run_with_progress(cmd, work_dir, iterations, f"RELION 3.1 on {n:,} particles", timeout)
    seconds = time.perf_counter() - t0
    out_map = work_dir / f"run_it{iterations:03d}_class001.mrc"
    if proc.returncode != 0 or not out_map.exists():
        raise RuntimeError(f"relion_refine failed (exit {proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    volume = read_mrc(out_map)[0]
    if volume.shape != problem.shape:
        raise RuntimeError(f"RELION map has shape {volume.shape}, the problem {problem.shape}")
    scale = fit_scale(problem, volume)
    scaled = (scale * volume).astype(np.float32)
    return {"map": scaled, "scale": scale, "test_nll": problem.test_nll(scaled),
            "test_nll_unscaled": problem.test_nll(volume), "n_particles": n, "n_train": len(train),
            "seconds": seconds, "iterations": iterations, "command": " ".join(cmd),
            "log": proc.stdout[-1000:]}


def dataset_files(name: str, scale: str, seed: int = 0) -> tuple[Path, np.ndarray]:
    """The cache folder of a simulated problem's STAR/MRCS stack and its held-out row numbers
    (test images and, where the problem has one, the harness's scoring split): never given to RELION."""
    from problems.catalog.realistic import realistic_spec
    from problems.catalog.synthetic import synthetic_spec
    from problems.data.cache import dataset_dir
    from problems.data.preprocess import split_indices
    if name == "synthetic":
        directory = dataset_dir(synthetic_spec(scale), seed)
        held = [np.load(directory / f) for f in ("test_indices.npy", "score_indices.npy") if (directory / f).exists()]
        return directory, np.unique(np.concatenate(held))
    if name == "realistic":
        spec = realistic_spec(scale)
        return dataset_dir(spec, seed), split_indices(spec.n_images, spec.n_test, seed)
    raise ValueError(f"RELION comparison: no simulated stack for problem {name!r} (synthetic or realistic)")
