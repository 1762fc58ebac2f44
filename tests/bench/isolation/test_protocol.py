"""Sweeps (resume after SIGKILL, Dask), the tuning protocol, the leaderboard, submissions, tampering."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bench.score.leaderboard import bootstrap_ci, rank, to_markdown
from bench.run.runner import run
from bench.isolation.harness import describe
from bench.isolation.sandbox import sandbox_status
from bench.isolation.submit import run_protocol
from bench.run.sweep import load_config, run_specs
from bench.run.tuning import sample_hyperparameters

SWEEP = """
scale = "tiny"
budget = "1epoch"
seeds = [0, 1, 2]
compare_truth = false
results_dir = "{results}"
[optimizers.sgd]
lr = [0.5, 1.0]
"""


def _records(results: Path):
    return sorted(results.rglob("*.json"))


def test_sweep_config_expands_grid(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.format(results=tmp_path / "r"))
    specs = load_config(cfg)
    assert len(specs) == 6 and {s.hyper["lr"] for s in specs} == {0.5, 1.0}
    bad = tmp_path / "bad.toml"
    bad.write_text("scale = 'tiny'\n")
    with pytest.raises(ValueError, match="missing key 'budget'"):
        load_config(bad)


def test_sweep_killed_with_sigkill_resumes_without_redoing(tiny, tmp_path):
    results = tmp_path / "r"
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.format(results=results))
    env = {**os.environ}
    cmd = [sys.executable, "-m", "bench.cli", "sweep", str(cfg), "--jobs", "1"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(_records(results)) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p: p.stat().st_mtime_ns for p in _records(results)}
    assert 2 <= len(first) < 6, "the sweep should have been killed midway"
    for p in first:                       # what exists is complete and readable
        assert json.loads(p.read_text())["status"] == "finished"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    after = _records(results)
    assert len(after) == 6
    assert all(first[p] == p.stat().st_mtime_ns for p in first)       # finished runs not redone
    assert f"{len(first)} reused" in out.stdout


def test_sweep_on_dask_local_cluster(tiny, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.format(results=tmp_path / "r").replace("seeds = [0, 1, 2]", "seeds = [0]"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        results = run_specs(load_config(cfg), scheduler=cluster.scheduler_address, progress=False)
    assert len(results) == 2 and all(r["status"] == "finished" for r in results)
    assert len(_records(tmp_path / "r")) == 2


def test_hyperparameter_sampling_deterministic_and_in_range():
    a, b = sample_hyperparameters("tonga", 8, seed=1), sample_hyperparameters("tonga", 8, seed=1)
    assert a == b and a[0] == {} and len(a) == 8
    for trial in a[1:]:
        assert 1e-2 <= trial["lr"] <= 1e2 and 1e-2 <= trial["reg"] <= 1e2
    assert sample_hyperparameters("tonga", 8, seed=2) != a


def test_bootstrap_ci():
    lo, hi = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci(np.array([5.0])) == (5.0, 5.0)


def test_protocol_entry_and_ranking(tiny, tmp_path):
    """Tuning on the validation split, seeds at full budget, an entry, a ranked table."""
    results = str(tmp_path / "r")
    for name in ("sgd", "momentum"):
        path = run_protocol("synthetic", "tiny", name, results_dir=results, budget="1epoch",
                            tuning_budget="0.5epoch", trials=2, seeds=2, isolated=False, n_jobs=1,
                            submitted=False)
        entry = json.loads(path.read_text())
        assert len(entry["runs"]) == 2 and entry["tuning_cost"] > 0
        trial_dirs = {p.parent.parent.name for p in Path(results).rglob("*.json") if "leaderboard" not in str(p)}
        assert "synthetic-validation-tiny" in trial_dirs        # tuning never saw the test images
    table = rank(results, "synthetic-tiny")
    assert list(table.columns[:4]) == ["entry_id", "optimizer", "submitted", "test_nll"]
    assert table["rank_nll"].is_monotonic_increasing           # ranked by the scoring split when there is one
    assert all(table.ci_low <= table.rank_nll) and all(table.rank_nll <= table.ci_high)   # CI of the ranked quantity
    assert "| 1 |" in to_markdown(table, "synthetic-tiny")


def _plugin(tmp_path, body: str, name="Plugin") -> str:
    path = tmp_path / f"plugin_{abs(hash(body))}.py"
    path.write_text(textwrap.dedent(f"""
        from dataclasses import dataclass
        import numpy as np
        @dataclass(frozen=True)
        class {name}:
            name = "plugin"
            search_space = {{}}
            def init(self, x0, info, rng):
                return 0
        """) + textwrap.indent(textwrap.dedent(body), "    "))
    return f"{path}:{name}"


needs_sandbox = pytest.mark.skipif(sandbox_status() is not None, reason=f"no sandbox: {sandbox_status()}")


@needs_sandbox
def test_submission_validation_errors(tmp_path):
    """The class is checked inside the sandbox; the harness gets the verdict as plain data."""
    with pytest.raises(ValueError, match="missing method step"):
        describe(_plugin(tmp_path, ""))
    with pytest.raises(ValueError, match=r"step must take \(x, state, oracle, rng\)"):
        describe(_plugin(tmp_path, "def step(self, x, oracle):\n    return x, 0\n"))
    with pytest.raises(ValueError, match="not found"):
        describe(str(tmp_path / "missing.py") + ":X")
    with pytest.raises(ValueError, match="cannot load.*boom"):
        describe(_plugin(tmp_path, "raise RuntimeError('boom')\n"))
    ok = describe(_plugin(tmp_path, "def step(self, x, state, oracle, rng):\n    return x, state\n"))
    assert ok == {"name": "plugin", "defaults": {}, "search_space": {}}


@needs_sandbox
def test_submission_that_raises_is_reported(tiny, tmp_path):
    spec = _plugin(tmp_path, "def step(self, x, state, oracle, rng):\n    raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="every tuning run failed.*boom"):
        run_protocol("synthetic", "tiny", spec, results_dir=str(tmp_path / "r"), budget="1epoch",
                     tuning_budget="0.5epoch", trials=1, seeds=1)


TAMPER = {
    "reset evals": "oracle.evals = 0",
    "private counter": "oracle._evals = 0",
    "private method": "oracle._charge(0, 0, 'x')",
    "closure reset": ("real = [c.cell_contents for c in type(oracle).value.__closure__ "
                      "if hasattr(c.cell_contents, '_evals')][0]\nreal._evals = 0"),
    "test images": "oracle.value(x, np.arange(oracle.n_train, oracle.n_train + 5))",
}


@pytest.mark.parametrize("attempt", list(TAMPER))
def test_tampering_in_process_fails_or_is_detected(tiny, tmp_path, attempt):
    body = ("def step(self, x, state, oracle, rng):\n"
            "    _, g = oracle.value_and_grad(x, oracle.next_batch(100))\n"
            + textwrap.indent(TAMPER[attempt], "    ") + "\n    return x - g, state\n")
    res = run(tiny, _plugin(tmp_path, body), budget=1000, results_dir=tmp_path / "r", progress=False,
              compare_truth=False)
    meta = json.loads(res.meta_path.read_text())
    assert res.status == "error"
    assert meta["evals"] <= 1000
    if attempt == "closure reset":
        assert "tampering detected" in meta["message"]


def test_budget_cannot_be_exceeded(tiny, tmp_path):
    body = ("def step(self, x, state, oracle, rng):\n"
            "    for _ in range(100):\n"
            "        _, g = oracle.value_and_grad(x, oracle.next_batch(100))\n"
            "    return x - g, state\n")
    res = run(tiny, _plugin(tmp_path, body), budget=450, results_dir=tmp_path / "r", progress=False,
              compare_truth=False)
    assert json.loads(res.meta_path.read_text())["evals"] == 400


@needs_sandbox
def test_submission_cannot_import_the_data_layer(tiny, tmp_path):
    """Inside the sandbox only problems.protocol exists (the attack plug-ins in tests/attacks go further)."""
    body = ("def step(self, x, state, oracle, rng):\n"
            "    from problems.data.cache import dataset_dir\n"
            "    return x, state\n")
    with pytest.raises(ValueError, match="every tuning run failed.*No module named 'problems.data'"):
        run_protocol("synthetic", "tiny", _plugin(tmp_path, body), results_dir=str(tmp_path / "r"),
                     budget="1epoch", tuning_budget="0.5epoch", trials=1, seeds=1, timeout=120)
