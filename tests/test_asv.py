"""The asv suite as documented: `asv check`, and a run that saves results that `asv publish` shows.

Every asv call here runs with HOME and the results in a temporary folder, so the suite never writes
the user's ``~/.asv-machine.json`` or the repository's ``.asv/`` (issue 25).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def asv(tmp_path):
    if shutil.which("asv") is None:
        pytest.skip("asv not installed (pip install -e .[dev])")
    conf = json.loads("\n".join(line for line in (ROOT / "asv.conf.json").read_text().splitlines()
                                if not line.strip().startswith("//")))
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), env_dir=str(tmp_path / "env"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}

    def run(*args):
        return subprocess.run(["asv", "--config", str(tmp_path / "asv.conf.json"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=env)
    run.tmp, run.home = tmp_path, home
    return run


def test_asv_check_and_a_saved_run(asv):
    user_machine_file = Path("~/.asv-machine.json").expanduser()
    before = user_machine_file.read_bytes() if user_machine_file.exists() else None
    check = asv("check", "--python=same")
    assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout + check.stderr
    assert asv("machine", "--yes", "--machine", "cryoopt-smoke").returncode == 0
    # without --set-commit-hash, `asv run --python=same` measures and saves nothing (README: why)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = asv("run", "--quick", "--python=same", "--machine", "cryoopt-smoke", "--set-commit-hash", commit,
              "--bench", "DataGeneration.time_generate_tiny")
    assert out.returncode == 0 and "failed" not in out.stdout, out.stdout + out.stderr
    saved = [p for p in (asv.tmp / "results" / "cryoopt-smoke").glob("*.json") if p.name != "machine.json"]
    assert len(saved) == 1 and commit[:8] in saved[0].name
    result = json.loads(saved[0].read_text())["results"]["bench_data.DataGeneration.time_generate_tiny"]
    assert isinstance(result[0][0], float) and result[0][0] > 0          # a time was recorded
    published = asv("publish")
    assert published.returncode == 0, published.stdout + published.stderr
    assert "time_generate_tiny" in (asv.tmp / "html" / "index.json").read_text()
    assert (asv.home / ".asv-machine.json").exists()                    # asv wrote its machine file here,
    after = user_machine_file.read_bytes() if user_machine_file.exists() else None
    assert after == before                                               # not into the user's home
