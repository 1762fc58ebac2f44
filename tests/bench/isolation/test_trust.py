"""Leaderboard trust, second round (issue 22): one attack test per guarantee, plus the typed records (issue 20).

Each test attacks (plug-ins in tests/attacks) and asserts what a hostile
submitter must not get; each failed on the code before issue 22 (see the
commit message for the check).
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_isolation import VICTIM, _attack_file, _run, _sandbox_processes, board, needs_sandbox  # noqa: F401

from bench.isolation.sandbox import Limits


@needs_sandbox
@pytest.mark.parametrize("claim", ["oversized-first", "fake-diverged"])
def test_only_the_server_ends_a_run_well(tmp_path, board, claim):
    """Guarantee 1: an end the optimizer claims (refused oversized first request + done, its own
    'diverged') is an error, unranked; the record reads back typed."""
    res, meta, log = _run(tmp_path, "claims.py", marker=claim)
    assert "CLAIM" in log
    assert res["status"] == "error", (res, meta["message"])
    from bench.isolation.record import IsolatedRunMeta
    assert IsolatedRunMeta.read(res["meta_path"]).status == "error"


@needs_sandbox
def test_the_server_decides_finished_and_diverged(tmp_path, board):
    """Guarantee 1, honest side: a batch that does not divide the budget still ends finished with the whole
    budget charged (450 of 450, the rest spent as values); a non-finite density is the server's diverged."""
    res, meta, _ = _run(tmp_path, "probe.py", budget=450)
    assert res["status"] == "finished" and meta["evals"] == 450 == meta["ledger"], meta["message"]
    res, meta, _ = _run(tmp_path, "claims.py", marker="nan-step")
    assert res["status"] == "diverged" and res["final_test_nll"] is None


@needs_sandbox
def test_trickling_peer_cannot_stretch_deadlines(tmp_path, board):
    """Guarantee 2: describe's limit (2 s here) holds against a byte every 0.5 s; a request trickled mid-run times out."""
    from bench.isolation.harness import describe
    file = _attack_file(tmp_path, "trickle.py", "describe")
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="could not be described"):
        describe(f"{file}:Attack", timeout=2)
    assert time.monotonic() - t0 < 12
    t0 = time.monotonic()
    res, meta, log = _run(tmp_path, "trickle.py", marker="request", timeout=3)
    assert res["status"] == "timeout" and "SUCCEEDED" not in log and time.monotonic() - t0 < 60


@needs_sandbox
@pytest.mark.parametrize("lie", ["not-a-range", "huge-range", "control-text"])
def test_forged_descriptions_are_refused_cleanly(tmp_path, lie):
    """Guarantee 3: a description written by the submission itself is checked field by field: one
    ValueError, or (the widest finite range) settings that sample finite."""
    from bench.isolation.harness import describe
    from bench.run.tuning import sample_hyperparameters
    spec = f"{_attack_file(tmp_path, 'forged_description.py', lie)}:Attack"
    if lie == "huge-range":
        trials = sample_hyperparameters(describe(spec), 8)
        assert all(np.isfinite(t["lr"]) for t in trials[1:]) and len(trials) == 8
        return
    with pytest.raises(ValueError, match="search_space|defaults"):
        describe(spec)


def test_sampled_settings_stay_finite_and_checked():
    """Guarantee 3: what a checked description allows samples to finite values in range."""
    from bench.isolation.harness import check_description
    from bench.run.tuning import sample_hyperparameters
    wide = {"name": "x", "defaults": {"a": 1.0, "b": 0.0},
            "search_space": {"a": {"low": 1e-300, "high": 1e300, "scale": "log"},
                             "b": {"low": -1e300, "high": 1e300, "scale": "linear"}}}
    for trial in sample_hyperparameters(wide, 16)[1:]:
        assert all(np.isfinite(v) for v in trial.values()) and 1e-300 <= trial["a"] <= 1e300
    for bad in ({**wide, "defaults": {"a": float("nan"), "b": 0.0}},
                {**wide, "search_space": {"a": {"low": 1.0, "high": float("inf"), "scale": "log"}}},
                {**wide, "search_space": {"a": {"low": 1, "high": 2, "scale": "log", "x": 1}}},
                {**wide, "defaults": {"a\x1b[2J": 1.0}, "search_space": {}},
                {**wide, "name": "sgd\r"}, [1, 2]):
        with pytest.raises(ValueError):
            check_description(bad)


def test_wire_checks_sizes_in_python_integers():
    """Guarantee 3: a shape whose int64 product wraps to 0 is a protocol violation, not a reshape crash."""
    import socket
    import struct

    from bench.isolation.wire import ProtocolViolation, recv
    a, b = socket.socketpair()
    bad = json.dumps({"arrays": [["<f8", [2**32, 2**32, 2**32]]]}).encode()
    a.sendall(struct.pack("<IQ", len(bad), 0) + bad)
    with pytest.raises(ProtocolViolation, match="bad array"):
        recv(b, 1 << 10)


@needs_sandbox
@pytest.mark.parametrize("attack", ["wire_overflow.py", "shrink_memfd.py"])
def test_the_server_survives_hostile_frames_and_buffers(tmp_path, board, attack):
    """Guarantee 3: an overflowing header and a shrunk shared memfd end the run (or nothing), never the server."""
    res, meta, log = _run(tmp_path, attack, budget=300)
    assert "SUCCEEDED" not in log, log[-2000:]
    assert "oracle server failed" not in meta["message"], meta["message"]
    if attack == "wire_overflow.py":
        assert res["status"] == "error" and "protocol violation" in meta["message"]
    else:
        assert res["status"] == "finished" and meta["evals"] == 300


@needs_sandbox
def test_untrusted_text_is_escaped(tmp_path, capsys, board):
    """Guarantee 4: an error message with ANSI escapes and a carriage return reaches the terminal neutralised;
    markup in an entry's name does not reach the Markdown table as markup."""
    from bench.commands import submit_cmd
    from bench.score.leaderboard import rank, to_markdown
    file = _attack_file(tmp_path, "hostile_text.py")
    parser = argparse.ArgumentParser()
    submit_cmd.add_args(parser)
    args = parser.parse_args([f"{file}:Attack", "--problem", "synthetic", "--scale", "tiny", "--results", str(board),
                              "--budget", "200", "--tuning-budget", "100", "--trials", "1", "--seeds", "1"])
    assert submit_cmd.main(args) == 2
    out = capsys.readouterr().out
    assert "not scored" in out and "\x1b" not in out and "\r" not in out and "\x07" not in out
    root = board / "leaderboard" / "synthetic-tiny"
    (root / "sub-x.json").write_text(json.dumps({**VICTIM, "optimizer": "<img src=x onerror=alert(1)>|x|\x1b[31m",
                                                 "submitted": True}))
    text = to_markdown(rank(board, "synthetic-tiny"), "synthetic-tiny")
    assert "<img" not in text and "\x1b" not in text and "\\|x\\|" in text


@needs_sandbox
def test_kernel_state_is_per_run_and_memory_is_per_sandbox(tmp_path, board):
    """Guarantee 6: each run has its own uid (no shared keyring; keyrings and memfds refused by seccomp),
    bwrap's arguments are not readable inside, and neither 64 memfds x 64 MiB nor 8 processes x 256 MiB
    hold more than the sandbox's memory limit (384 MiB here)."""
    marker = f"{os.getpid()}-{time.time_ns()}"
    _, _, first = _run(tmp_path, "kernel_state.py", marker=marker)
    _, _, second = _run(tmp_path, "kernel_state.py", marker=marker)
    assert "SUCCEEDED" not in first + second, (first + second)[-2000:]
    uids = [line for line in (first + second).splitlines() if line.startswith("UID")]
    assert len(uids) == 2 and uids[0] != uids[1]
    cap = {"sandbox_memory_bytes": 384 << 20} if "sandbox_memory_bytes" in Limits.__dataclass_fields__ else {}
    from bench.isolation.harness import run_isolated
    hog = _attack_file(tmp_path, "memfd_hog.py")
    res = run_isolated({"problem": "synthetic", "scale": "tiny", "data_seed": 0, "optimizer": f"{hog}:Attack",
                        "hyper": {}, "seed": 0, "budget": 200, "record_name": "sub-test", "compare_truth": False},
                       {"name": "attack", "defaults": {}, "search_space": {}}, results_dir=tmp_path / "results",
                       timeout=120, limits=Limits(**cap))
    log = Path(res["meta_path"]).with_suffix(".log").read_text()
    held = [int(line.split()[1]) for line in log.splitlines() if line.startswith("HELD")]
    procs = [int(line.split()[2]) for line in log.splitlines() if line.startswith("PROCS HELD")]
    print(f"memfds held at most {max(held, default=0)} MiB, processes {max(procs, default=0)} MiB; {res['status']}")
    assert max(held, default=0) < 512 and max(procs, default=0) < 512, log[-1000:]
    hog_uid = [line for line in log.splitlines() if line.startswith("UID")]
    left = {int(line.split()[1]) for line in uids + hog_uid}
    deadline = time.monotonic() + 10                     # killed processes may take a moment to be reaped
    while _sandbox_processes(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes(left) == 0                 # nothing left of those runs


def test_leaderboard_build_without_a_secret_is_one_clear_error(tmp_path, monkeypatch, capsys):
    """Guarantee 9."""
    from bench.commands import leaderboard_cmd
    for var in ("CRYOOPT_SECRET_KEY", "CRYOOPT_SECRET_SEED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CRYOOPT_SECRET_KEY_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("CRYOOPT_SECRET_SEED_FILE", str(tmp_path / "none"))
    parser = argparse.ArgumentParser()
    leaderboard_cmd.add_args(parser)
    args = parser.parse_args(["--results", str(tmp_path), "--build", "tiny", "--out", str(tmp_path / "out")])
    assert leaderboard_cmd.main(args) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "secret" in out[0] and "token_hex" in out[0]


@needs_sandbox
def test_protocol_identity_secret_artefacts_and_tuning_cost(tmp_path, board):
    """Guarantees 5, 7, 8 through the whole protocol: tuning cost is the allotted budget even when trials
    stop early; the scored instance's densities never reach results/; no second entry (or case variant of
    a built-in) shows the same name; rows carry the harness-assigned id."""
    from bench.isolation.submit import run_protocol
    from bench.score.leaderboard import rank
    spec = f"{_attack_file(tmp_path, 'two_faced.py')}:Attack"
    path = run_protocol("synthetic", "tiny", spec, results_dir=str(board), budget=200, tuning_budget=200,
                        trials=2, seeds=1)
    entry = json.loads(path.read_text())
    assert entry["tuning_cost"] == 2 * 200                      # not 200 + 100: the second trial stopped early
    assert entry["hyperparameters"] == {} and entry["status"] == "ranked"
    scored = json.loads((board / entry["runs"][0]["record"]).read_text())
    assert scored["snapshots"] == {} and not list((board / "synthetic-tiny").rglob(f"{scored['run_key']}*.mrc"))
    assert not (board / "synthetic-tiny" / "ground_truth.mrc").exists()
    with pytest.raises(ValueError, match="reserved"):
        run_protocol("synthetic", "tiny", spec, results_dir=str(board), budget=200, trials=1, seeds=1)
    twin = tmp_path / "twin.py"
    twin.write_text((tmp_path / "submission" / "two_faced.py").read_text().replace('"attack-two-faced"', '"SGD"'))
    with pytest.raises(ValueError, match="reserved"):
        run_protocol("synthetic", "tiny", f"{twin}:Attack", results_dir=str(board), budget=200, trials=1, seeds=1)
    table = rank(board, "synthetic-tiny")
    assert set(table.entry_id) == {"sgd", entry["entry_id"]}
    assert list(table.set_index("entry_id").optimizer[[entry["entry_id"]]]) == ["attack-two-faced"]


def test_leaderboard_entries_are_typed_and_checked_on_read(tmp_path):
    """Issue 20: a hand-edited entry is one message naming the file and the field; valid files read unchanged."""
    from bench.score.entry import LeaderboardEntry
    from bench.score.leaderboard import load_entries
    root = tmp_path / "leaderboard" / "p"
    root.mkdir(parents=True)
    (root / "good.json").write_text(json.dumps(VICTIM))
    assert LeaderboardEntry.read(root / "good.json").to_json() == VICTIM
    cases = {"cost.json": ({**VICTIM, "tuning_cost": "abc"}, "field 'tuning_cost': expected a number"),
             "status.json": ({**VICTIM, "runs": [{"status": "won", "final_test_nll": 0.0}]}, "field 'status'"),
             "record.json": ({**VICTIM, "runs": [{"status": "finished", "record": "../../etc/passwd"}]},
                             "field 'record'"),
             "nll.json": ({**VICTIM, "runs": [{"status": "finished", "final_test_nll": "0"}]},
                          "runs\\[0\\]: field 'final_test_nll'"),
             "missing.json": ({k: v for k, v in VICTIM.items() if k != "runs"}, "field 'runs' is missing")}
    for name, (data, _) in cases.items():
        (root / name).write_text(json.dumps(data))
    entries, problems = load_entries(tmp_path, "p")
    assert [e["entry_id"] for e in entries] == ["good"] and len(problems) == len(cases)
    for name, (_, message) in cases.items():
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            LeaderboardEntry.read(root / name)


def test_isolated_run_record_is_typed_and_checked_on_read(tmp_path):
    """Issue 20: the harness's run record keeps its JSON keys and names the bad field of a corrupt file."""
    from bench.isolation.record import IsolatedRunMeta
    meta = IsolatedRunMeta(run_key="k", problem="synthetic", problem_label="synthetic-tiny", problem_version="3",
                           problem_hash="h", optimizer="o", optimizer_spec="f.py:C", hyperparameters={}, seed=0,
                           budget=200.0, evals=200.0, status="finished", message="", final_test_nll=1.5,
                           record_name="sub-1", ledger=200.0, shared_memory_calls=2, extra={"git_commit": "c"})
    data = meta.to_json()
    assert {"record_name", "isolated", "ledger", "shared_memory_calls", "git_commit", "run_key"} <= set(data)
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data))
    assert IsolatedRunMeta.read(path) == meta
    path.write_text(json.dumps({**data, "evals": "many"}))
    with pytest.raises(ValueError, match="k.json: field 'evals': expected a number"):
        IsolatedRunMeta.read(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="k.json: not a readable run record"):
        IsolatedRunMeta.read(path)
