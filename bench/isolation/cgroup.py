"""A control group per sandboxed run: memory (including shared memory and memfds) and processes capped per sandbox.

``RLIMIT_AS`` caps each process's *mappings*; it does not see pages held by a
memfd or a tmpfs file that is not mapped, and every process of the sandbox
has its own.  A cgroup counts every page its processes charge (anonymous,
page cache, shmem, memfds, the private ``/tmp``) against one limit for the
whole sandbox, and ``pids.max`` caps its tasks whatever their uid.  Measured
here (``tests/attacks/memfd_hog.py``, 64 memfds of 64 MiB written without
mapping them, then 8 processes of 256 MiB): before, the sandbox held all
4,096 MiB of memfds and 2,048 MiB in processes; with a 384 MiB cgroup (and no
seccomp filter) the memfds stopped at 320 MiB, OOM-killed; with the seccomp
filter as well (:mod:`.seccomp`, now always loaded) no memfd is created and
one 256 MiB process survives, the others are OOM-killed.

Two kinds, whichever this machine lets the harness create:

* cgroup v2 (unified hierarchy, a delegated subtree with the ``memory`` and
  ``pids`` controllers enabled): ``memory.max``, ``memory.swap.max = 0``, ``pids.max``;
* cgroup v1 (``memory`` and ``pids`` hierarchies writable, e.g. root in a
  container): ``memory.limit_in_bytes``, ``pids.max``.

The child joins the group before it executes anything (a ``/bin/sh`` shim
writes its own pid into ``cgroup.procs`` and ``exec``s the sandbox), so
nothing it starts escapes the group; :meth:`RunCgroup.kill` SIGKILLs every
task in it and removes it.  Where neither works, :func:`cgroup_status` says
why and the sandbox keeps its per-process limits only (README, threat model).
"""
from __future__ import annotations

import functools
import os
import signal
import time
import uuid
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str:
    """This process's cgroup path in ``controller``'s v1 hierarchy (``""`` for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (controller == "" and names == ""):
            return path
    return "/"


def _v1_parent(controller: str) -> Path:
    mount = _ROOT / controller
    own = mount / _own(controller).lstrip("/")
    return own if own.is_dir() else mount


def _v2_parent() -> Path | None:
    for base in (_ROOT, _ROOT / "unified"):
        if (base / "cgroup.controllers").is_file():
            own = base / _own("").lstrip("/")
            parent = own if own.is_dir() else base
            if {"memory", "pids"} <= set((parent / "cgroup.subtree_control").read_text().split()):
                return parent
    return None


class RunCgroup:
    """One run's cgroup(s); ``procs`` are the ``cgroup.procs`` files the child writes itself into."""

    def __init__(self, memory_bytes: int, pids: int):
        self.dirs: list[Path] = []
        name = f"cryoopt-{uuid.uuid4().hex[:16]}"
        try:
            v2 = _v2_parent()
            if v2 is not None:
                self._make(v2 / name, {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": pids})
            else:
                self._make(_v1_parent("memory") / name, {"memory.limit_in_bytes": memory_bytes})
                self._make(_v1_parent("pids") / name, {"pids.max": pids})
        except OSError:
            self.remove()
            raise

    def _make(self, path: Path, settings: dict) -> None:
        path.mkdir()
        self.dirs.append(path)
        for key, value in settings.items():
            if (path / key).exists():
                (path / key).write_text(str(value))

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside the group: the shim joins it, then ``exec``s ``cmd``."""
        shim = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", shim, "cryoopt-cgroup", *self.procs, "--", *cmd]

    def tasks(self) -> set[int]:
        out = set()
        for procs in self.procs:
            try:
                out |= {int(p) for p in Path(procs).read_text().split()}
            except OSError:
                pass
        return out

    def kill(self) -> None:
        """SIGKILL every task of the group until it is empty, then remove it."""
        for _ in range(200):
            tasks = self.tasks()
            if not tasks:
                break
            for pid in tasks:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        self.remove()

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:                # tasks still exiting
                    time.sleep(0.02)
        self.dirs = []


@functools.lru_cache(maxsize=1)
def cgroup_status() -> str | None:
    """None when a per-run cgroup can be made here, else why not (checked once per process)."""
    try:
        RunCgroup(1 << 30, 64).remove()
    except OSError as exc:
        return f"no writable cgroup v2 subtree with memory+pids, nor v1 memory and pids hierarchies ({exc})"
    return None
