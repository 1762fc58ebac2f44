"""The sandbox sees the interpreter wherever it lives, also in a virtual environment under /tmp (issue 25)."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from bench.isolation.sandbox import sandbox_status

ROOT = Path(__file__).resolve().parents[3]
WHY = sandbox_status()


@pytest.mark.skipif(WHY is not None, reason=f"bubblewrap sandbox unavailable: {WHY}")
def test_sandbox_starts_from_a_venv_under_tmp(tmp_path):
    # pytest's tmp_path lies under /tmp, where the sandbox mounts its private tmpfs: before the fix
    # the venv's python was hidden by it ("setpriv: failed to execute .../python3", a broken pipe here).
    assert str(tmp_path).startswith("/tmp/")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import sys; from bench.isolation.sandbox import sandbox_status;"
                          "print(sys.prefix); print(sandbox_status())"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    prefix, status = out.stdout.strip().splitlines()[-2:]
    assert Path(prefix) == env_dir                   # the check really ran inside the venv
    assert status == "None", out.stdout + out.stderr
