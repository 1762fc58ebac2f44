"""List every optional part, whether it works here, what it enables and the command that installs it.

Example: cryoopt doctor
"""
from __future__ import annotations

import importlib.util
import shutil


def version_text() -> str:
    """``cryoopt <version> (git <commit>), Python <version>``: what a bug report needs."""
    from bench.run.records import environment
    env = environment()
    commit = f" (git {env['git_commit'][:12]})" if env.get("git_commit") else ""
    return f"cryoopt {env['package_version']}{commit}, Python {env['python']}"


def _module(name: str, dist: str) -> str | None:
    """None when ``name`` imports here (found, not imported: importing torch or jax takes seconds), else why not."""
    if importlib.util.find_spec(name) is None:
        return f"{dist} not installed"
    return None


def _sandbox() -> str | None:
    from bench.isolation.sandbox import sandbox_status
    return sandbox_status()


def _gpu() -> str | None:
    why = _module("cupy", "cupy-cuda12x")
    if why:
        return why
    try:
        import cupy
        return None if cupy.cuda.runtime.getDeviceCount() > 0 else "no CUDA device"
    except Exception as exc:           # a driver or library mismatch: say which
        return f"CuPy does not start: {exc}"


def _program(*names: str) -> str | None:
    return None if any(shutil.which(n) for n in names) else f"{' / '.join(names)} not on PATH"


#: (part, check, what it enables, how to install)
PARTS = (
    ("bubblewrap + util-linux", _sandbox, "scoring submitted optimizers in the sandbox (cryoopt submit)",
     "apt-get install bubblewrap util-linux"),
    ("RELION 3.1", lambda: _program("relion_refine"), "the RELION entry of Fig. 6, cryoopt bench relion",
     "apt-get install relion (or build 3.1 from github.com/3dem/relion)"),
    ("Chromium", lambda: _program("chromium", "chromium-browser"),
     "screenshots of the HTML leaderboard in .ci/run", "apt-get install chromium"),
    ("CuPy + GPU", _gpu, "--device cuda: the oracle's pose phases on a GPU", "pip install -e .[gpu]"),
    ("dask", lambda: _module("distributed", "distributed"), "cryoopt sweep --scheduler ADDRESS",
     "pip install -e .[dask]"),
    ("torch", lambda: _module("torch", "torch"), "--optimizer torch (any torch.optim optimizer)",
     "pip install -e .[torch]"),
    ("optax", lambda: _module("optax", "optax"), "--optimizer optax (any optax.GradientTransformation)",
     "pip install -e .[optax]"),
)


def add_args(p) -> None:
    pass


def main(args) -> int:
    print(version_text())
    for part, check, enables, install in PARTS:
        why = check()
        print(f"{'ok ' if why is None else '-- '} {part:<24} {enables}")
        if why is not None:
            print(f"     {'':<24} missing: {why}; install: {install}")
    return 0
