"""cryoopt compare A B: the leaderboard's paired statistics for two entries, with a plot (issue 25)."""
import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.report.compare import compare


def _entries(tmp_path):
    from bench.score.leaderboard import write_entry
    rng = np.random.default_rng(7)
    base = rng.normal(20, 2, 200)
    per = {}
    for entry_id, optimizer, shift in (("sgd", "sgd", 0.0), ("sub-9", "mine", 0.25), ("sub-8", "mine", 0.3)):
        runs = []
        for seed in range(3):
            values = base + shift + rng.normal(0, 0.05, base.size)
            per[entry_id, seed] = values
            record = f"synthetic-tiny/{entry_id}/{seed}.json"
            (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / record).write_text(json.dumps({"score_nll_per_image": values.tolist(),
                                                       "score_nll": float(values.mean())}))
            pd.DataFrame({"evals": [100.0, 400.0], "test_nll": [25.0, 20.0 + shift]}).to_parquet(
                (tmp_path / record).with_suffix(".parquet"))
            runs.append({"seed": seed, "status": "finished", "final_test_nll": 20.0 + shift, "record": record})
        write_entry(tmp_path / "leaderboard" / "synthetic-tiny" / f"{entry_id}.json",
                    {"optimizer": optimizer, "runs": runs, "hyperparameters": {}, "tuning_cost": 0})
    return per


def test_compare_is_the_paired_difference_with_a_plot(tmp_path):
    per = _entries(tmp_path)
    result, files = compare(tmp_path, "synthetic-tiny", "sgd", "sub-9", tmp_path / "out")
    expected = np.mean([per["sgd", s] - per["sub-9", s] for s in range(3)])
    assert result["delta"] == pytest.approx(expected) and result["ci_high"] < 0          # sgd better, resolved
    assert result["n_seeds"] == 3 and result["n_images"] == 200 and result["basis"] == "scoring images"
    assert files[0].suffix == ".png" and files[0].stat().st_size > 10_000
    with pytest.raises(ValueError, match="several entries 'mine'"):
        compare(tmp_path, "synthetic-tiny", "sgd", "mine", tmp_path / "out")


def test_compare_command(tmp_path, capsys):
    _entries(tmp_path)
    args = ["compare", "sub-9", "sgd", "--problem", "synthetic-tiny", "--results", str(tmp_path),
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "sgd is better" in capsys.readouterr().out
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == "sub-9" and out["delta"] > 0 and out["plot"][0].endswith(".png")
