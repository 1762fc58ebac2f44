"""RELION 3.1 as an entry of Fig. 6: run once (or reuse), then score like every run record.

The run's outputs (scaled map, scores, command, timing) are kept under
``results/<label>/relion-<n>p-seed<s>/`` so a second reproduction reuses them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from problems.data.io import read_mrc, write_mrc

from .. import relion
from bench.score.metrics import compare_to_truth

# Particles per scale: about 15 minutes of RELION's CPU build on 2 cores at paper scale
# (0.05 s per particle per iteration x 5 iterations x 3,000); the small scales take everything up to that.
PARTICLES = {"tiny": 100, "small": 1000, "paper": 3000}


def relion_entry(problem, name: str, scale: str, results_dir: str, n_particles: int | None,
                 iterations: int = 5, seed: int = 0) -> dict:
    """RELION's map and scores for Fig. 6 (see :mod:`bench.experiments.relion`); ``n_particles=None``: the scale's
    default subset.  Returns a JSON-able dict plus ``map`` (scaled, unaligned) and ``aligned``."""
    n = PARTICLES.get(scale, 3000) if n_particles is None else int(n_particles)
    label = f"{problem.name}-{scale}"
    work = Path(results_dir) / label / f"relion-{n}p-seed{seed}"
    summary_path, map_path = work / "relion.json", work / "relion_scaled.mrc"
    if summary_path.exists() and map_path.exists():
        summary = json.loads(summary_path.read_text())
        volume = read_mrc(map_path)[0]
        summary["reused"] = True
    else:
        directory, test = relion.dataset_files(name, scale, seed)
        expected = relion.expected_seconds(min(n, problem.n_train), iterations, problem.box_size)
        print(f"RELION 3.1: {iterations} iterations on {min(n, problem.n_train):,} of {problem.n_train:,} training "
              f"images; expected roughly {expected / 60:.1f} min on 2 cores (--relion-particles changes the subset, "
              f"--no-relion skips it)")
        out = relion.run_relion(problem, directory, test, work, n_particles=n, seed=seed, iterations=iterations)
        volume = out.pop("map")
        summary = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}
        full = relion.command(Path("all_train.star"), Path("initial_density.mrc"), Path("run"),
                              ini_high=float(problem.metadata["resolution_angstrom"]),
                              particle_diameter=0.9 * problem.box_size * problem.metadata["pixel_size_angstrom"],
                              healpix=relion.healpix_order(problem.band.r_max),
                              offset_range=float(problem.metadata.get("shift_extent", 0.0)), iterations=iterations)
        summary["full_set_command"] = " ".join(full)
        if problem.ground_truth is not None:
            cmp = compare_to_truth(volume, problem.ground_truth, problem.metadata["pixel_size_angstrom"],
                                   problem.band.r_max)
            summary["fsc"] = {k: v for k, v in cmp.items() if k != "aligned"}
        write_mrc(map_path, volume, problem.metadata["pixel_size_angstrom"])
        summary_path.write_text(json.dumps(_jsonable(summary), indent=1))
        summary["reused"] = False
    summary["map"] = volume
    return summary


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value
