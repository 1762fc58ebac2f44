"""Isolation of submitted optimizers (issue 13): every attack plug-in in tests/attacks ends with the
run unranked or unchanged, the harness's files and other entries intact, and nothing left running."""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bench.isolation.sandbox import SandboxUnavailable, sandbox_status

ATTACKS = Path(__file__).resolve().parents[2] / "attacks"
REPO = Path(__file__).resolve().parents[3]
WHY = sandbox_status()
needs_sandbox = pytest.mark.skipif(WHY is not None, reason=f"bubblewrap sandbox unavailable: {WHY}")
INFO = {"name": "attack", "defaults": {}, "search_space": {}}
VICTIM = {"optimizer": "sgd", "entry_id": "sgd", "runs": [{"seed": 0, "status": "finished", "final_test_nll": 1.0}],
          "hyperparameters": {}, "tuning_cost": 1.0, "problem_hash": "x"}


@pytest.fixture
def board(tmp_path):
    """A results folder holding another optimizer's entry, which no attack may touch."""
    results = tmp_path / "results"
    victim = results / "leaderboard" / "synthetic-tiny" / "sgd.json"
    victim.parent.mkdir(parents=True)
    victim.write_text(json.dumps(VICTIM))
    return results


def _attack_file(tmp_path: Path, name: str, marker: str = "") -> Path:
    from problems.data.cache import cache_dir
    text = (ATTACKS / name).read_text()
    for key, value in {"__CACHE__": str(cache_dir().resolve()), "__RESULTS__": str(tmp_path / "results"),
                       "__REPO__": str(REPO), "__MARKER__": marker}.items():
        text = text.replace(key, value)
    out = tmp_path / "submission" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    return out


def _run(tmp_path: Path, name: str, budget=200, timeout=60.0, marker="", seed=0, **spec):
    from bench.isolation.harness import run_isolated
    file = _attack_file(tmp_path, name, marker)
    res = run_isolated({"problem": "synthetic", "scale": "tiny", "data_seed": 0, "optimizer": f"{file}:Attack",
                        "hyper": {}, "seed": seed, "budget": budget, "record_name": "sub-test",
                        "compare_truth": False, **spec}, INFO,
                       results_dir=tmp_path / "results", timeout=timeout)
    meta = json.loads(Path(res["meta_path"]).read_text())
    log = Path(res["meta_path"]).with_suffix(".log").read_text()
    return res, meta, log


def _intact(board: Path) -> None:
    assert json.loads((board / "leaderboard" / "synthetic-tiny" / "sgd.json").read_text()) == VICTIM
    assert not (board / "pwned.json").exists()


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _sandbox_processes(uids=None) -> int:
    """Processes of a sandbox user: ``uids``, or nobody and every per-run uid (others' runs included)."""
    from bench.isolation.sandbox import NOBODY, RUN_UIDS
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:\t")[1].split()[0])
            count += uid in uids if uids is not None else (uid == NOBODY or uid in RUN_UIDS)
        except (OSError, IndexError):
            pass
    return count


@needs_sandbox
def test_honest_run_matches_in_process_run(tiny, tmp_path, board):
    """The isolated run is the same optimization: same evaluations, same test NLL as the in-process runner."""
    from bench.run.runner import run
    res, meta, _ = _run(tmp_path, "probe.py", budget=300)
    assert res["status"] == "finished" and meta["evals"] == 300 and meta["ledger"] == 300
    assert meta["calls"]["value_and_grad"] == 3 and meta["shared_memory_calls"] == 4   # + the refused one
    ref = run(tiny, f"{_attack_file(tmp_path, 'probe.py')}:Attack", budget=300, results_dir=tmp_path / "ref",
              progress=False, compare_truth=False)
    assert res["final_test_nll"] == pytest.approx(ref.final_test_nll, rel=1e-5)
    _intact(board)


@needs_sandbox
@pytest.mark.parametrize("base", ["EM", "HessianFree"])
def test_expectation_m_step_and_hvp_through_the_server(tiny, tmp_path, base):
    """Complex E-step statistics and HVPs cross the wire: the same run as in-process, bit for bit."""
    from bench.isolation.harness import run_isolated
    from bench.run.runner import run
    file = tmp_path / "wrapped.py"
    file.write_text(f"from dataclasses import dataclass\nfrom optimizers import {base}\n\n\n"
                    f"@dataclass(frozen=True)\nclass Attack({base}):\n    name = 'wrapped'\n"
                    + ("    m_step_iterations: int = 3\n" if base == "EM" else
                       "    batch_size: int = 20\n"))     # one HF step (20 + 5 CG HVPs x 40 = 220) fits in 400
    res = run_isolated({"problem": "synthetic", "scale": "tiny", "data_seed": 0, "optimizer": f"{file}:Attack",
                        "hyper": {}, "seed": 0, "budget": 400, "record_name": "sub-w", "compare_truth": False},
                       INFO, results_dir=tmp_path / "results", timeout=120)
    ref = run(tiny, f"{file}:Attack", budget=400, results_dir=tmp_path / "ref", progress=False, compare_truth=False)
    assert res["status"] == ref.status == "finished"
    assert res["final_test_nll"] == pytest.approx(ref.final_test_nll, rel=1e-6)


@needs_sandbox
@pytest.mark.parametrize("name", ["read_cache_files.py", "read_cache_proc.py", "import_and_env.py",
                                  "write_outside.py"])
def test_attacks_find_nothing(tmp_path, board, name, monkeypatch):
    monkeypatch.setenv("CRYOOPT_SECRET_KEY", "5551234567abcdef0123456789fedcba")
    res, meta, log = _run(tmp_path, name)
    assert "BLOCKED" in log and "SUCCEEDED" not in log, log[-2000:]
    assert "5551234567" not in log
    assert res["status"] == "finished" and meta["evals"] == 200        # the honest part of the run still works
    _intact(board)


@needs_sandbox
def test_oracle_internals_and_forged_requests(tmp_path, board):
    res, meta, log = _run(tmp_path, "oracle_internals.py", budget=400)
    assert "SUCCEEDED" not in log and "held-out indices: OracleInputError" in log, log[-2000:]
    assert res["status"] == "error" and "protocol violation" in meta["message"]
    assert meta["evals"] <= 400
    _intact(board)


@needs_sandbox
def test_budget_cannot_be_exceeded(tmp_path, board):
    res, meta, log = _run(tmp_path, "free_evaluations.py", budget=450)
    assert "BLOCKED" in log
    assert meta["evals"] == 400 and meta["calls"]["value_and_grad"] == 4
    assert res["status"] == "error"                          # it did not end as the protocol asks


@needs_sandbox
def test_nothing_outlives_the_run(tmp_path, board):
    marker = f"cryoopt-outlive-{os.getpid()}-{time.time_ns()}"
    res, meta, log = _run(tmp_path, "outlive.py", budget=300, marker=marker)
    assert "daemons started" in log
    # its spender thread shares the connection with the main thread: by scheduling the run ends when the budget
    # is spent (finished) or when interleaved requests break the protocol (error; seen once in a CI run)
    assert meta["evals"] <= 300 and (res["status"], meta["message"][:19]) in {("finished", ""), (
        "error", "protocol violation:"), ("error", "the optimizer ended")}, (res["status"], meta["message"])
    time.sleep(0.2)
    assert _processes_with(marker) == []
    _intact(board)


@needs_sandbox
def test_forged_output_is_not_a_result(tmp_path, board):
    res, meta, log = _run(tmp_path, "forge_output.py")
    assert '"final_test_nll": -1e9' in log.replace("-1000000000.0", "-1e9")      # it did print its forgery
    assert res["status"] == "error" and meta["final_test_nll"] != -1e9
    assert "ended the run itself" in meta["message"]
    _intact(board)


@needs_sandbox
def test_huge_output_is_capped(tmp_path, board):
    res, meta, log = _run(tmp_path, "huge_output.py")
    assert len(log) < 100_000 and "more bytes of output dropped" in log
    assert res["status"] == "finished"


@needs_sandbox
def test_fork_bomb_and_memory_hog_are_limited(tmp_path, board):
    res, meta, log = _run(tmp_path, "resources.py")
    assert "fork refused" in log and "memory refused" in log and "SUCCEEDED" not in log, log[-2000:]
    uid = int(next(line for line in log.splitlines() if line.startswith("UID")).split()[1])
    deadline = time.monotonic() + 10                     # killed processes may take a moment to be reaped
    while _sandbox_processes({uid}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes({uid}) == 0                # the run's own user has no process left
    assert res["status"] == "finished"


@needs_sandbox
def test_time_out_kills_the_run(tmp_path, board):
    t0 = time.monotonic()
    res, meta, _ = _run(tmp_path, "sleeper.py", timeout=4)
    assert res["status"] == "timeout" and time.monotonic() - t0 < 40
    assert meta["evals"] == 5


@needs_sandbox
def test_tuning_and_scored_runs_look_alike(tmp_path, board):
    """Argv, environment variable names, OptimizerInfo fields and visible files are the same."""
    _, _, tuning = _run(tmp_path, "probe.py", validation=50)
    _, _, scored = _run(tmp_path, "probe.py", seed=1)
    probe = lambda log: [line for line in log.splitlines() if line.startswith("PROBE")]  # noqa: E731
    assert probe(tuning) == probe(scored) and len(probe(tuning)) == 1
    assert "validation" not in tuning.lower()


@needs_sandbox
def test_submission_protocol_secret_instance_and_reserved_names(tiny, tmp_path, board, monkeypatch):
    from bench.score.leaderboard import load_entries, rank
    from bench.isolation.submit import run_protocol
    with pytest.raises(ValueError, match="reserved"):
        run_protocol("synthetic", "tiny", f"{_attack_file(tmp_path, 'name_collision.py')}:Attack",
                     results_dir=str(board), budget=200, tuning_budget=100, trials=1, seeds=1)
    path = run_protocol("synthetic", "tiny", f"{_attack_file(tmp_path, 'probe.py')}:Attack", results_dir=str(board),
                        budget=200, tuning_budget=100, trials=1, seeds=1)
    entry = json.loads(path.read_text())
    assert entry["entry_id"].startswith("sub-") and path.stem == entry["entry_id"]
    assert entry["status"] == "ranked" and entry["runs"][0]["status"] == "finished"
    scored = json.loads((board / entry["runs"][0]["record"]).read_text())
    assert scored["problem_hash"] == entry["problem_hash"] != tiny.metadata["content_hash"]   # secret instance
    (board / "leaderboard" / "synthetic-tiny" / "broken.json").write_text("{not json")
    entries, problems = load_entries(board, "synthetic-tiny")
    assert len(problems) == 1 and "broken.json" in problems[0]
    assert {e["entry_id"] for e in entries} == {"sgd", entry["entry_id"]}
    assert "attack-probe" in set(rank(board, "synthetic-tiny").optimizer)
    _intact(board)


def test_unranked_entries_are_not_ranked(tmp_path):
    from bench.score.leaderboard import load_entries, rank, write_entry
    root = tmp_path / "leaderboard" / "p"
    for i, status in enumerate(["finished", "timeout", "error"]):
        write_entry(root / f"e{i}.json", {**VICTIM, "optimizer": f"o{i}", "runs": [{"status": status, "final_test_nll": 1.0}]})
    (root / "e3.json").write_text(json.dumps({"optimizer": 3}))
    entries, problems = load_entries(tmp_path, "p")
    assert [e["entry_status"] for e in entries] == ["ranked", "unranked (timeout)", "unranked (error)"]
    assert len(problems) == 1
    assert list(rank(tmp_path, "p").optimizer) == ["o0"]


def test_missing_sandbox_refuses_to_score(tmp_path, monkeypatch):
    from bench.isolation import describe, harness, sandbox
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        sandbox.command(tmp_path, None, sandbox.Limits(), 3)
    monkeypatch.setattr(describe, "sandbox_status", lambda: "bwrap not found")
    with pytest.raises(SandboxUnavailable, match="cannot score submitted optimizers"):
        harness.describe(str(ATTACKS / "probe.py") + ":Attack")


def test_secret_key_sources_and_entropy(tmp_path, monkeypatch):
    """Guarantee 7: the scored instance comes from a key of >= 128 random bits, never a small integer."""
    from bench.isolation.submit import SecretSeedMissing, secret_seed
    from bench.run.runner import SECRET_SEEDS_FROM
    monkeypatch.delenv("CRYOOPT_SECRET_KEY", raising=False)
    monkeypatch.setenv("CRYOOPT_SECRET_KEY_FILE", str(tmp_path / "none"))
    with pytest.raises(SecretSeedMissing, match="CRYOOPT_SECRET_KEY"):
        secret_seed()
    for weak in ("123456789", "918273645", "00000000000000000000000000000000", "0123456789abcdef" * 2 + "x",
                 "12121212121212121212121212121212", "0123456789abcde"):
        monkeypatch.setenv("CRYOOPT_SECRET_KEY", weak)
        with pytest.raises(SecretSeedMissing, match="128 bits"):
            secret_seed()
    key = "9f86d081884c7d659a2feaa0c55ad015"
    (tmp_path / "key").write_text(key + "\n")
    monkeypatch.delenv("CRYOOPT_SECRET_KEY")
    monkeypatch.setenv("CRYOOPT_SECRET_KEY_FILE", str(tmp_path / "key"))
    seed = secret_seed()
    assert seed >= SECRET_SEEDS_FROM and seed.bit_length() == 128
    monkeypatch.setenv("CRYOOPT_SECRET_KEY", key.upper())
    assert secret_seed() == seed                             # the same key, however written
    monkeypatch.setenv("CRYOOPT_SECRET_KEY", key[:-1] + "e")
    assert secret_seed() != seed


def test_wire_rejects_malformed_frames():
    import socket
    import struct

    from bench.isolation.wire import ProtocolViolation, recv, send
    a, b = socket.socketpair()
    send(a, {"op": "x"}, [np.arange(3, dtype=np.int64), np.ones((2, 2), np.float32)])
    h, arrays = recv(b, 1 << 10)
    assert h == {"op": "x"} and arrays[0].tolist() == [0, 1, 2] and arrays[1].shape == (2, 2)
    bad = json.dumps({"arrays": [["|O", [1]]]}).encode()       # object dtype: would mean unpickling
    a.sendall(struct.pack("<IQ", len(bad), 8) + bad + b"\0" * 8)
    with pytest.raises(ProtocolViolation, match="bad array"):
        recv(b, 1 << 10)
    a.sendall(struct.pack("<IQ", 2, 1 << 40))
    with pytest.raises(ProtocolViolation, match="exceeds"):
        recv(b, 1 << 10)


def test_sandbox_side_modules_import_only_what_the_sandbox_has():
    """wire/client/child are copied into the sandbox next to optimizers/ and problems/protocol.py only."""
    import ast

    from bench.isolation.sandbox import CHILD_MODULES
    siblings = {Path(m).stem for m in CHILD_MODULES} - {"__init__"}
    for name in siblings:
        tree = ast.parse((REPO / "bench" / "isolation" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, (name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for mod in mods:
                    top = mod.split(".")[0]
                    assert top not in ("bench", "problems") or mod == "problems.protocol", (name, mod)


def test_leaderboard_command_survives_corrupt_and_unranked_entries(tmp_path, capsys):
    import argparse

    from bench.commands import leaderboard_cmd
    root = tmp_path / "leaderboard" / "synthetic-tiny"
    root.mkdir(parents=True)
    (root / "sgd.json").write_text(json.dumps(VICTIM))
    (root / "sub-1.json").write_text(json.dumps({**VICTIM, "optimizer": "mine", "runs": [{"status": "timeout"}]}))
    (root / "sub-2.json").write_bytes(b"\xff\xfe not json")
    parser = argparse.ArgumentParser()
    leaderboard_cmd.add_args(parser)
    args = parser.parse_args(["--results", str(tmp_path), "--out", str(tmp_path / "out")])
    assert leaderboard_cmd.main(args) == 0
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 1 | `sgd` | sgd |" in text and "- sub-1 (mine): unranked (timeout)" in text and "sub-2.json" in text


@needs_sandbox
def test_submission_symlinked_into_the_cache_is_refused(tmp_path):
    from bench.isolation.harness import describe
    from problems.data.cache import cache_dir
    target = next(p for p in cache_dir().rglob("*.json"))
    link = tmp_path / "innocent.py"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="lies inside"):
        describe(f"{link}:Attack")
