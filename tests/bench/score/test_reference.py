"""The reference optimum, suboptimality, and the scoring split (bench/score/reference.py, Problem.score_nll)."""
import json

import numpy as np
import pytest

from bench.score.reference import (compute_reference, density_sha256, full_objective, load_reference,
                             score_against_reference)


def test_full_objective_is_mean_nll_plus_prior_over_k(tiny):
    x = tiny.initial_density(0)
    lik = tiny.likelihood()
    images, ctf = tiny._train
    nll = lik.nll(x, lik.prepare(images, ctf)).astype(np.float64)
    expected = nll.mean() + tiny.prior.value(x) / tiny.n_train
    assert full_objective(tiny, x, batch=128) == pytest.approx(expected, rel=1e-5)
    f, g = full_objective(tiny, x, grad=True, batch=128)
    _, g_all = tiny.oracle().value_and_grad(x, np.arange(tiny.n_train))
    assert f == pytest.approx(expected, rel=1e-5) and np.allclose(g, g_all, rtol=1e-3, atol=1e-6 * np.abs(g_all).max())


def test_reference_is_computed_resumed_and_beaten(tiny, tmp_path):
    ref = compute_reference(tiny, tmp_path, sgd_epochs=1, lbfgs_iters=4, chunk=2, progress=False)
    stored = json.loads((tmp_path / "references" / "synthetic-tiny.json").read_text())
    assert stored["problem_hash"] == tiny.metadata["content_hash"] == load_reference(tmp_path, tiny)["problem_hash"]
    assert {c["start"] for c in stored["candidates"]} == {"init", "truth"}
    # L-BFGS only descends: the reference is below both of its starting points
    assert ref["train_objective"] <= min(full_objective(tiny, tiny.ground_truth), full_objective(tiny, tiny.initial_density(0)))
    assert ref["train_objective"] == min(c["train_objective"] for c in stored["candidates"])
    x_ref = np.load(stored["density_file"].replace("$CRYOOPT_CACHE", __import__("os").environ["CRYOOPT_CACHE"]))
    assert density_sha256(x_ref) == ref["density_sha256"]
    assert full_objective(tiny, x_ref) == pytest.approx(ref["train_objective"], rel=1e-6)
    # resuming does not redo the finished iterations
    again = compute_reference(tiny, tmp_path, sgd_epochs=1, lbfgs_iters=4, chunk=2, progress=False)
    assert again["train_objective"] == ref["train_objective"]
    # a worse density: positive suboptimality, the reference unchanged
    x0 = tiny.initial_density(0)
    worse = score_against_reference(tiny, tmp_path, x0, full_objective(tiny, x0), tiny.test_nll(x0), "test")
    assert worse["suboptimality"] > 0 and not worse["beat_reference"]
    assert worse["test_nll_gap"] == pytest.approx(tiny.test_nll(x0) - ref["test_nll"])
    # pretend the reference were worse than x_ref: scoring x_ref replaces it and says so
    stored["train_objective"] += 1.0
    (tmp_path / "references" / "synthetic-tiny.json").write_text(json.dumps(stored))
    beat = score_against_reference(tiny, tmp_path, x_ref, full_objective(tiny, x_ref), None, "sgd/abc")
    assert beat["beat_reference"] and beat["suboptimality"] == pytest.approx(-1.0, abs=1e-5)
    updated = load_reference(tmp_path, tiny)
    assert updated["train_objective"] == pytest.approx(ref["train_objective"], rel=1e-6)
    assert "sgd/abc" in updated["how"] and len(updated["history"]) == 1


def test_reference_refuses_unknown_start(tiny, tmp_path):
    with pytest.raises(ValueError):
        compute_reference(tiny, tmp_path, starts=("nowhere",), progress=False)


def test_scoring_split_is_held_out_and_scored_per_image(tiny):
    from problems.data.cache import BandData
    from problems.problem import Problem
    images = np.concatenate([tiny._train[0], tiny._test[0]])
    ctf = np.concatenate([tiny._train[1], tiny._test[1]])
    data = BandData(images, ctf, tiny._pixel_size, tiny.box_size)
    n = images.shape[0]
    test, score = np.arange(n - 20, n), np.arange(50)
    p = Problem(data=data, test_indices=test, score_indices=score, ground_truth=tiny.ground_truth,
                **tiny._init_args)
    assert p.n_train == n - 70 and p.n_score == 50 and p.metadata["n_score"] == 50
    assert p.metadata["content_hash"] != tiny.metadata["content_hash"]
    x = tiny.initial_density(0)
    lik = tiny.likelihood()
    direct = lik.nll(x, lik.prepare(images[:50], ctf[:50]))
    per_image = p.score_nll(x, batch=16, per_image=True)
    assert per_image.shape == (50,) and np.allclose(per_image, direct, rtol=1e-5)
    assert p.score_nll(x) == pytest.approx(direct.mean(), rel=1e-5)
    assert p.test_nll(x) == pytest.approx(tiny.test_nll(x), rel=1e-6)
    assert tiny.n_score == tiny.metadata["n_score"] == 200 and np.isfinite(tiny.score_nll(x))
    with pytest.raises(ValueError):          # tuning never sees the scoring images
        tiny.validation_split(50).score_nll(x)
    with pytest.raises(ValueError):
        Problem(data=data, test_indices=test, score_indices=test[:3], **tiny._init_args)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_committed_references_belong_to_the_problems_the_code_builds(scale, _isolated_cache):
    """``load_reference`` ignores a reference of other bytes (a changed simulator, another version):
    a stale committed file would silently drop the suboptimality column from every leaderboard."""
    from pathlib import Path

    from problems import load_problem
    problem = load_problem("synthetic", scale=scale, seed=0, progress=False)
    results = Path(__file__).resolve().parents[3] / "results"
    assert load_reference(results, problem) is not None, (
        f"results/references/synthetic-{scale}.json is stale: rerun `cryoopt reference --problem synthetic "
        f"--scale {scale}` and commit it")
