"""Sweeps return their summaries in the order of the specs, not the order runs finish in."""
from bench.run.spec import RunSpec
from bench.run.sweep import run_specs


def test_summaries_follow_spec_order_when_a_later_run_finishes_first(tmp_path):
    # Two workers: the second spec (100 evaluations) finishes long before the first (100,000, a few seconds),
    # so a completion-ordered result would list it first.
    slow = RunSpec(problem="synthetic", scale="tiny", optimizer="sgd", budget="100000", seed=0,
                   results_dir=str(tmp_path), compare_truth=False)
    fast = RunSpec(problem="synthetic", scale="tiny", optimizer="sgd", budget="100", seed=1,
                   results_dir=str(tmp_path), compare_truth=False)
    summaries = run_specs([slow, fast], n_jobs=2, progress=False)
    assert [s["spec"]["seed"] for s in summaries] == [0, 1]
    assert [s["status"] for s in summaries] == ["finished", "finished"]
