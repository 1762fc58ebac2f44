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


def _board(tmp_path, entries):
    """entries: id -> (optimizer, hyper, mean score, run keys); records with per-seed scoring NLLs."""
    from bench.score.leaderboard import write_entry
    rng = np.random.default_rng(5)
    for entry_id, (optimizer, hyper, mean, keys) in entries.items():
        runs = []
        for seed, key in enumerate(keys):
            values = rng.normal(mean + 0.3 * seed, 0.1, 50)
            record = f"synthetic-tiny/{entry_id}/{key}.json"
            (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / record).write_text(json.dumps({"score_nll_per_image": values.tolist(),
                                                       "score_nll": float(values.mean())}))
            runs.append({"seed": seed, "status": "finished", "final_test_nll": 30.0, "record": record})
        write_entry(tmp_path / "leaderboard" / "synthetic-tiny" / f"{entry_id}.json",
                    {"optimizer": optimizer, "runs": runs, "hyperparameters": hyper, "tuning_cost": 0})


def test_table_shows_ids_and_hyperparameters_ci_of_the_ranked_quantity_and_no_empty_columns(tmp_path):
    from bench.score.leaderboard import rank, to_markdown
    _board(tmp_path, {"sgd": ("sgd", {"lr": 2.0}, 20.0, ["k1", "k2"]),
                      "sub-a1": ("mine", {"lr": 0.5}, 21.0, ["k3", "k4"])})
    table = rank(tmp_path, "synthetic-tiny")
    # every test NLL is 30: a CI of the test NLL would be [30, 30]; the ranked scoring NLL spreads over seeds
    assert table.ranked_by.iloc[0] == "scoring NLL"
    assert table.ci_low.iloc[0] < table.score_nll.iloc[0] < table.ci_high.iloc[0] < 30
    md = to_markdown(table, "synthetic-tiny")
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert header.startswith("| rank | id | optimizer | scoring NLL | 95% CI |")
    assert "`sub-a1`" in md and '{"lr": 0.5}' in md
    cells = "".join(line for line in md.splitlines() if line.startswith("|"))
    assert "suboptimality" not in header and "n/a" not in cells     # n/a for every entry: dropped


def test_identical_resubmission_is_listed_once_and_an_entry_can_be_withdrawn(tmp_path, capsys):
    from bench.cli import main
    from bench.score.leaderboard import load_entries, rank
    _board(tmp_path, {"sgd": ("sgd", {}, 20.0, ["k1"]),
                      "sub-1": ("mine", {"lr": 1.0}, 21.0, ["k5", "k6"]),
                      "sub-2": ("mine", {"lr": 1.0}, 21.0, ["k5", "k6"])})   # same code, same settings
    entries, _ = load_entries(tmp_path, "synthetic-tiny")
    assert {e["entry_id"]: e["entry_status"] for e in entries}["sub-2"] == "duplicate of sub-1"
    assert list(rank(tmp_path, "synthetic-tiny").entry_id) == ["sgd", "sub-1"]
    assert main(["leaderboard", "--results", str(tmp_path), "--withdraw", "sub-1"]) == 0
    assert (tmp_path / "leaderboard" / "synthetic-tiny" / "withdrawn" / "sub-1.json").exists()
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path), "--json", "--out", str(tmp_path / "out")]) == 0
    rows = json.loads(capsys.readouterr().out)["synthetic-tiny"]
    assert [r["entry_id"] for r in rows] == ["sgd", "sub-2"] and rows[0]["rank"] == 1
