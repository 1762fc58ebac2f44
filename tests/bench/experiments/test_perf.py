"""The speed benchmarks' plumbing (no timing assertions: only what a wrong count would break)."""
from pathlib import Path

import numpy as np
import pytest

from bench.experiments.perf import bench_oracle, format_report, format_shift_profile, random_target, shift_profile
from bench.experiments.relion_speed import offset_count, relion_rotations, subset_star


def test_random_target_benchmark_reports_the_configuration():
    target = random_target(16, 0.4, shift_extent=1.0, n_images=30)
    r = bench_oracle(target, batch_size=10, repeats=3, progress=False)
    quad = target.likelihood.quadrature
    assert (r["poses"], r["rotations"], r["shifts"]) == (quad.size, quad.n_rotations, 5)
    assert r["poses"] == r["rotations"] * r["shifts"]
    assert {"forward GEMM", "log-sum-exp", "backward GEMM", "slicing"} <= set(r["phases_ms"])
    # conjugate pairs + shift-shared |CS|^2: 2 directions x 2B rows x (2S + 1) D columns x n_base
    d, nb = target.likelihood.band.size, quad.n_base
    assert r["gemm_gflop_per_step"] * 1e9 == pytest.approx(2 * 2 * 2 * 10 * (2 * 5 + 1) * d * nb)
    assert "5 shifts" in format_report(r)


def test_shift_profile_compares_the_same_rotations():
    r = shift_profile(16, 0.4, 1.0, batch_size=8, repeats=1)
    assert r["n_shifts"] == 5 and r["ratio"] > 0
    assert r["gemm_flop_ratio"] == pytest.approx((2 * 5 + 1) / 3)
    assert "ratio per pose-rotation" in format_shift_profile(r)


def test_relion_sampling_counts():
    assert relion_rotations(2) == (192, 24)                  # 4,608 rotations at 15 degrees
    assert offset_count(3.0, 1.0) == 29                      # the 4,608 x 29 samples
    assert offset_count(0.0) == 1 and offset_count(2.0) == 13


def test_subset_star_makes_image_paths_absolute(tmp_path):
    import pandas as pd
    import starfile
    src = tmp_path / "data"
    src.mkdir()
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [2.0], "rlnImageSize": [16]})
    parts = pd.DataFrame({"rlnImageName": [f"{i:06d}@stack.mrcs" for i in range(1, 6)],
                          "rlnOpticsGroup": [1] * 5})
    starfile.write({"optics": optics, "particles": parts}, src / "particles.star")
    out = subset_star(src / "particles.star", 3, tmp_path / "sub.star")
    back = starfile.read(out, always_dict=True)
    names = list(back["particles"]["rlnImageName"])
    assert len(names) == 3 and names[2] == f"000003@{(src / 'stack.mrcs').resolve()}"
    assert Path(names[0].split("@")[1]).is_absolute()
    np.testing.assert_allclose(back["optics"]["rlnImagePixelSize"], [2.0])
