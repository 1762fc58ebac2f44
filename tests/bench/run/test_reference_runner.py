"""Run records carry the harness's end-of-run scores: suboptimality, test-NLL gap, per-image NLLs."""
import json

import numpy as np
import pytest

from bench.score.reference import compute_reference


def test_run_record_reports_suboptimality(tiny, tmp_path):
    from bench.run.runner import run
    ref = compute_reference(tiny, tmp_path, sgd_epochs=1, lbfgs_iters=2, chunk=2, starts=("truth",), progress=False)
    res = run(tiny, "sgd", {"lr": 1.0}, budget="1epoch", seed=0, results_dir=tmp_path, progress=False,
              compare_truth=False)
    meta = json.loads(res.meta_path.read_text())
    opt = meta["optimality"]
    assert opt["available"] and opt["reference_train_objective"] == ref["train_objective"]
    assert meta["train_objective"]["final"] == pytest.approx(opt["train_objective"])
    assert opt["suboptimality"] == pytest.approx(opt["train_objective"] - ref["train_objective"])
    assert opt["test_nll_gap"] == pytest.approx(meta["final_test_nll"] - ref["test_nll"])
    assert len(meta["test_nll_per_image"]) == 20
    assert np.mean(meta["test_nll_per_image"]) == pytest.approx(meta["final_test_nll"], rel=1e-6)


def test_full_objective_once_per_run_and_harness_time_recorded(tiny, tmp_path, monkeypatch):
    """Past the 5K snapshot the run still makes one full-objective pass (the final density's), and the
    record says what the uncharged evaluations cost against the run's wall time."""
    import bench.score.reference as reference
    from bench.run.runner import run
    calls = []
    original = reference.full_objective
    monkeypatch.setattr(reference, "full_objective", lambda *a, **k: calls.append(1) or original(*a, **k))
    res = run(tiny, "sgd", {"lr": 1.0}, budget=5200, seed=0, results_dir=tmp_path, progress=False,
              compare_truth=False)
    meta = json.loads(res.meta_path.read_text())
    assert set(meta["snapshots"]) == {"5000", "final"}
    assert len(calls) == 1 and set(meta["train_objective"]) == {"final"}
    harness = meta["harness_seconds"]
    assert set(harness) == {"curvature", "test NLL", "snapshots", "final scores"}
    assert all(v >= 0 for v in harness.values()) and harness["final scores"] > 0
    assert sum(harness.values()) + meta["optimizer_seconds"] <= meta["wall_seconds"]
