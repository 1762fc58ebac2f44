"""The runner and the command line on the tiny problem."""
import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.run.runner import checkpoint_schedule, parse_budget, run


def test_parse_budget():
    assert parse_budget("5epochs", 400) == 2000
    assert parse_budget("0.5epoch", 400) == 200
    assert parse_budget("1e4", 400) == 1e4
    for bad in ("five", "-1", "0epochs"):
        with pytest.raises(ValueError):
            parse_budget(bad, 400)


def test_checkpoints_geometric_and_end_at_budget():
    cp = checkpoint_schedule(2000)
    assert cp[0] == 100 and cp[-1] == 2000 and np.all(np.diff(np.log(cp)) > 0)


def test_run_writes_record_and_reuses_it(tiny, tmp_path):
    res = run(tiny, "sgd", {"lr": 1.0}, budget="2epochs", seed=0, results_dir=tmp_path, progress=False)
    assert res.status == "finished" and not res.skipped
    meta = json.loads(res.meta_path.read_text())
    table = pd.read_parquet(res.meta_path.with_suffix(".parquet"))
    assert meta["evals"] == 800 and meta["budget"] == 800
    assert table["evals"].is_monotonic_increasing and table["evals"].is_unique
    assert table["test_nll"].iloc[-1] < table["test_nll"].iloc[0]
    assert meta["final_test_nll"] == pytest.approx(table["test_nll"].iloc[-1])
    assert meta["problem_hash"] == tiny.metadata["content_hash"]
    again = run(tiny, "sgd", {"lr": 1.0}, budget="2epochs", seed=0, results_dir=tmp_path, progress=False)
    assert again.skipped and again.key == res.key


def test_divergence_is_a_status_not_a_crash(tiny, tmp_path):
    res = run(tiny, "sgd", {"lr": 1e9}, budget="2epochs", seed=0, results_dir=tmp_path, progress=False)
    assert res.status == "diverged"


def test_plugin_from_path_and_broken_optimizer(tiny, tmp_path):
    plugin = tmp_path / "my_opt.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "@dataclass(frozen=True)\n"
        "class Half:\n"
        "    name = 'half'\n"
        "    search_space = {}\n"
        "    lr: float = 0.5\n"
        "    def init(self, x0, info, rng): return 0\n"
        "    def step(self, x, state, oracle, rng):\n"
        "        _, g = oracle.value_and_grad(x, oracle.next_batch(100))\n"
        "        return x - self.lr * g, state + 1\n"
        "@dataclass(frozen=True)\n"
        "class Broken:\n"
        "    name = 'broken'\n"
        "    search_space = {}\n"
        "    def init(self, x0, info, rng): return 0\n"
        "    def step(self, x, state, oracle, rng): raise ZeroDivisionError('oops')\n")
    ok = run(tiny, f"{plugin}:Half", budget=200, results_dir=tmp_path, progress=False)
    assert ok.status == "finished"
    bad = run(tiny, f"{plugin}:Broken", budget=200, results_dir=tmp_path, progress=False)
    assert bad.status == "error"
    assert "ZeroDivisionError" in json.loads(bad.meta_path.read_text())["message"]


def test_cli_run_and_listing(tiny, tmp_path, capsys):
    assert main(["run", "--scale", "tiny", "--budget", "1epoch", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "finished: test NLL" in out and "record:" in out
    assert main(["optimizers"]) == 0 and "sgd" in capsys.readouterr().out
    assert main(["run", "--scale", "tiny", "--optimizer", "nope", "--results", str(tmp_path)]) == 2
    assert "unknown optimizer" in capsys.readouterr().err


def test_cli_help_lists_every_command(capsys):
    from bench.commands import COMMANDS
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
        with pytest.raises(SystemExit):
            main([name, "--help"])
