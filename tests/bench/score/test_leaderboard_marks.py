"""The leaderboard marks entries whose runs left budget unspent (issue 25)."""
import json

import numpy as np


def test_entry_with_unspent_budget_is_marked(tmp_path):
    from bench.score.leaderboard import rank, to_markdown, write_entry
    rng = np.random.default_rng(4)
    for name, unspent in (("full", (False, False)), ("short", (True, False))):
        runs = []
        for seed, flag in enumerate(unspent):
            values = rng.normal(20, 1, 50)
            record = f"synthetic-tiny/{name}/{seed}.json"
            (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / record).write_text(json.dumps({"score_nll_per_image": values.tolist(),
                                                       "score_nll": float(values.mean()), "budget_unspent": flag}))
            runs.append({"seed": seed, "status": "finished", "final_test_nll": 20.0, "record": record})
        write_entry(tmp_path / "leaderboard" / "synthetic-tiny" / f"{name}.json",
                    {"optimizer": name, "runs": runs, "hyperparameters": {}, "tuning_cost": 0})
    md = to_markdown(rank(tmp_path, "synthetic-tiny"), "synthetic-tiny")
    assert "short (budget unspent in 1 of 2 seeds)" in md
    assert "full (budget" not in md
