"""Paired comparisons between leaderboard entries (bench/score/stats.py)."""
import json

import numpy as np
import pytest

from bench.score.stats import adjacent_comparisons, holm, paired_comparison, pairwise_table, summarize


def _outcomes(per_image: np.ndarray) -> dict:
    return {s: {"seed": s, "final_test_nll": float(v.mean()), "per_image": v, "basis": "scoring images"}
            for s, v in enumerate(per_image)}


def test_holm_adjustment():
    assert np.allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    out = holm([np.nan, 0.2])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.2)


def test_a_real_difference_is_resolved_and_its_sign_kept():
    rng = np.random.default_rng(0)
    base = rng.normal(20, 3, (3, 1000))                     # image difficulty shared by both entries
    a = base + rng.normal(0, 0.5, base.shape) - 0.1
    b = base + rng.normal(0, 0.5, base.shape)
    c = paired_comparison(_outcomes(a), _outcomes(b))
    assert c["basis"] == "scoring images" and c["n_seeds"] == 3 and c["n_images"] == 1000
    assert c["delta"] == pytest.approx(-0.1, abs=0.05) and c["ci_high"] < 0 and c["p_value"] < 1e-3
    # unpaired, the image difficulty (sd 3) would swamp a 0.1 difference: pairing is what resolves it
    assert 3 / np.sqrt(3000) > 0.05


def test_no_false_discoveries_under_the_null_even_with_seed_noise():
    """A seed-level offset (optimizer randomness) with few seeds must not look significant,
    though an image-level test alone would call it so."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(40):
        offset = rng.normal(0, 0.3, (3, 1))
        a = rng.normal(0, 0.2, (3, 500)) + offset
        b = rng.normal(0, 0.2, (3, 500))
        c = paired_comparison(_outcomes(a + 20), _outcomes(b + 20))
        hits += bool(c["p_value"] < 0.05 and (c["ci_high"] < 0 or c["ci_low"] > 0))
    assert hits <= 5          # ~5% expected; an image-level test alone would flag most of them


def test_seed_level_fallback_and_divergence():
    a = {s: {"seed": s, "final_test_nll": 10.0 + 0.01 * s} for s in range(3)}
    b = {s: {"seed": s, "final_test_nll": 11.0} for s in range(3)}
    c = paired_comparison(a, b)
    assert c["basis"] == "seeds" and c["n_images"] == 1 and np.isnan(c["p_wilcoxon"])   # 3 seeds: t only
    assert c["ci_high"] < 0 and c["p_value"] < 0.01
    assert c["delta"] == pytest.approx(-0.99)
    b[1]["final_test_nll"] = np.inf
    assert paired_comparison(a, b)["delta"] == -np.inf
    assert paired_comparison(a, {7: b[0]})["basis"] == "no shared seeds"


def test_comparisons_from_records(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.normal(20, 2, 300)
    entries = []
    for name, shift in (("good", -0.3), ("same", -0.29), ("bad", 0.5)):
        runs = []
        for seed in range(3):
            values = base + shift + rng.normal(0, 0.3, base.size)
            record = f"synthetic-tiny/{name}/{seed}.json"
            (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / record).write_text(json.dumps({
                "score_nll_per_image": values.tolist(), "score_nll": values.mean(),
                "test_nll_per_image": values[:20].tolist(),
                "optimality": {"suboptimality": 0.1 + shift, "test_nll_gap": shift}}))
            runs.append({"seed": seed, "status": "finished", "final_test_nll": float(values[:20].mean()),
                         "record": record})
        entries.append({"optimizer": name, "runs": runs})
    comps = adjacent_comparisons(tmp_path, entries)
    assert [c["significant"] for c in comps] == [False, True]
    assert comps[1]["delta"] == pytest.approx(-0.79, abs=0.1)
    table = pairwise_table(tmp_path, entries, ["good", "same", "bad"])
    assert table.loc["good", "bad"].endswith("*") and not table.loc["good", "same"].endswith("*")
    summary = summarize(tmp_path, entries[0])
    assert summary["suboptimality"] == pytest.approx(-0.2) and summary["score_nll"] == pytest.approx(19.7, abs=0.3)


def test_leaderboard_ranks_by_scoring_nll_and_marks_significant_differences(tmp_path):
    from bench.score.leaderboard import rank, to_markdown, write_entry
    rng = np.random.default_rng(3)
    base = rng.normal(20, 2, 400)
    # test NLL (20 images) would order a before b; the 400 scoring images order b before a, resolvably
    for name, shift, test_bias in (("a", 0.0, -1.0), ("b", -0.4, 0.0), ("c", -0.39, 0.5)):
        runs = []
        for seed in range(3):
            values = base + shift + rng.normal(0, 0.2, base.size)
            record = f"synthetic-tiny/{name}/{seed}.json"
            (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / record).write_text(json.dumps({
                "score_nll_per_image": values.tolist(), "score_nll": float(values.mean()),
                "optimality": {"suboptimality": 0.01 * (seed + 1), "test_nll_gap": 0.1}}))
            runs.append({"seed": seed, "status": "finished", "final_test_nll": 20.0 + test_bias, "record": record})
        write_entry(tmp_path / "leaderboard" / "synthetic-tiny" / f"{name}.json",
                    {"optimizer": name, "runs": runs, "hyperparameters": {}, "tuning_cost": 0})
    table = rank(tmp_path, "synthetic-tiny")
    assert list(table.optimizer) == ["b", "c", "a"] and set(table.ranked_by) == {"scoring NLL"}
    assert list(table.significant_vs_next) == [False, True, False]
    assert table.loc[1, "suboptimality"] == pytest.approx(0.02)
    md = to_markdown(table, "synthetic-tiny")
    assert "| 2 | `c` | c |" in md and " *" in md.splitlines()[-2]
