"""Smoke test of the asv suite: it must stay importable and runnable (numbers are not checked here)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("asv") is None, reason="asv not installed (pip install -e .[dev])")
def test_asv_check_and_one_benchmark(tmp_path):
    run = lambda *a: subprocess.run(["asv", *a], cwd=ROOT, capture_output=True, text=True, timeout=600)  # noqa: E731
    check = run("check", "--python=same")
    assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout + check.stderr
    assert run("machine", "--yes", "--machine", "cryoopt-smoke").returncode == 0
    out = run("run", "--quick", "--python=same", "--machine", "cryoopt-smoke", "--dry-run",
              "--bench", "DataGeneration")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "time_generate_tiny" in out.stdout and "failed" not in out.stdout
