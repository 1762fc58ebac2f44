"""The OS-level sandbox of the optimizer process: bubblewrap, setpriv and prlimit.

The optimizer runs as ``prlimit ... bwrap ... setpriv ... python`` with

* a new mount namespace whose only contents are read-only binds of the
  system (``/usr``, ``/lib*``, ``/bin``), the Python installation, a staging
  copy of ``optimizers/`` + ``problems/protocol.py`` + the child-side modules
  of :mod:`bench.isolation`, and the submission file -- the data cache, the
  results, the repository and the harness's files do not exist in it;
* a private ``/tmp`` (size-capped tmpfs), a fresh ``/proc`` of its own PID
  namespace (no other process is visible, ``/proc/<ppid>/mem`` is its own
  init), no network (new network namespace with loopback only), new IPC and
  UTS namespaces, an empty environment;
* a user of its own per run (issue 22): as root, a fresh random uid from
  :data:`RUN_UIDS` (no capabilities, ``no_new_privs``, dropped by ``setpriv``
  inside the sandbox, so the process-count limit applies: it does not to
  root), otherwise a new user namespace per run -- so per-uid kernel state
  (keyrings, process counts) is not shared between runs or submissions;
* resource limits: address space, CPU seconds, file size, process count,
  open files, no core dumps; where the machine allows, a cgroup per run
  (:mod:`.cgroup`: memory including shared memory and memfds, and tasks,
  capped per sandbox); ``--die-with-parent`` and a new session, and the
  harness kills the whole process group and every task of the cgroup (the
  PID namespace dies with its init) at the end or on time-out;
* a seccomp filter (:mod:`.seccomp`): ``memfd_create`` and the kernel
  keyring calls fail with ``EPERM``;
* bwrap reads its options (which name host paths) from a file descriptor
  (``--args FD``), so its own command line -- visible as ``/proc/1/cmdline``
  inside -- is just ``bwrap --args N -- python ...``.

Packages: Debian ``bubblewrap`` (``bwrap``) and ``util-linux`` (``setpriv``,
``prlimit``).  :func:`sandbox_status` says whether they work here;
``cryoopt submit`` refuses to score when they do not.
"""
from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from . import seccomp

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
RUN_UIDS = range(1 << 24, 1 << 25)
"""The uids runs get as root (one drawn at random per run; nothing else on the machine uses them)."""
CHILD_MODULES = ("__init__.py", "wire.py", "client.py", "child.py")
_SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache")


class SandboxUnavailable(RuntimeError):
    """bubblewrap/setpriv/prlimit are missing or do not work on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process tree."""

    memory_bytes: int = 4 << 30          # RLIMIT_AS
    cpu_seconds: int = 3600              # RLIMIT_CPU per process (wall time is the harness's time-out)
    file_bytes: int = 64 << 20           # RLIMIT_FSIZE (only /tmp is writable)
    processes: int = 64                  # RLIMIT_NPROC of user nobody (threads count)
    tmp_bytes: int = 256 << 20           # size of the private /tmp
    output_bytes: int = 64 << 10         # stdout + stderr kept (the rest is drained and dropped)
    open_files: int = 256                # RLIMIT_NOFILE
    sandbox_memory_bytes: int = 4 << 30  # the run's cgroup: every page of the sandbox (incl. memfds, /tmp)


def python_roots() -> list[str]:
    """Folders of the running Python installation (prefix, base prefix, site-packages)."""
    import site
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    return sorted(r for r in roots if Path(r).exists())


def stage(dest: Path) -> Path:
    """Copy what the sandbox may import into ``dest`` (world-readable): optimizers, protocol, child modules."""
    shutil.copytree(ROOT / "optimizers", dest / "optimizers", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "problems").mkdir()
    (dest / "problems" / "__init__.py").write_text('"""Only the protocol is present inside the sandbox."""\n')
    shutil.copy2(ROOT / "problems" / "protocol.py", dest / "problems" / "protocol.py")
    (dest / "cryoopt_child").mkdir()
    for name in CHILD_MODULES:
        shutil.copy2(Path(__file__).with_name(name), dest / "cryoopt_child" / name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def check_not_exposed(binds: list[str], protected: list[Path]) -> None:
    """Refuse to run if a protected folder (data cache, results) lies inside a bound folder."""
    for p in protected:
        rp = os.path.realpath(p)
        for b in binds:
            rb = os.path.realpath(b)
            if rp == rb or rp.startswith(rb.rstrip("/") + "/"):
                raise SandboxUnavailable(f"{p} lies inside {b}, which the sandbox must see; "
                                         f"move it (e.g. set CRYOOPT_CACHE) before scoring submissions")


def command(staging: Path, submission: Path | None, limits: Limits, fd: int) -> list[str]:
    """The full ``prlimit bwrap setpriv python`` command line."""
    tools = {t: shutil.which(t) for t in ("prlimit", "bwrap", "setpriv")}
    missing = [t for t, p in tools.items() if p is None]
    if missing:
        raise SandboxUnavailable(f"{', '.join(missing)} not found: install the Debian packages bubblewrap "
                                 f"and util-linux (see .ci/run) to score submitted optimizers")
    cmd = [tools["prlimit"], f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}",
           f"--fsize={limits.file_bytes}", f"--nproc={limits.processes}", f"--nofile={limits.open_files}",
           "--core=0", "--",
           tools["bwrap"], "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
    root = os.geteuid() == 0
    # As root: no user namespace (RLIMIT_NPROC does not bind root, so setpriv must make the process a
    # real `nobody`); otherwise an unprivileged user namespace, and the real uid is already not root.
    cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if root else [
        "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    for path in _SYSTEM:
        if os.path.exists(path):
            cmd += ["--ro-bind", path, path]
    # The private /tmp is mounted before the Python installation is bound: a virtual environment under
    # /tmp (as `python -m venv /tmp/env` makes) is then bound on top of the tmpfs, not hidden by it.
    cmd += ["--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    for path in python_roots():
        for parent in reversed(Path(path).parents[:-1]):    # bwrap would create them 0700
            if not any(str(parent) == s or str(parent).startswith(s + "/") for s in (*_SYSTEM, "/tmp")):
                cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind", str(staging), "/app"]
    if submission is not None:
        cmd += ["--perms", "0755", "--dir", "/submission",
                "--ro-bind", str(submission), f"/submission/{submission.name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp"]
    env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "CRYOOPT_FD": str(fd), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    cmd += ["--"]
    if root:
        uid = RUN_UIDS.start + secrets.randbelow(len(RUN_UIDS))
        cmd += [tools["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    cmd += [sys.executable, "-E", "-s", "-B", "-c",
            "import sys; sys.path.insert(0, '/app'); from cryoopt_child.child import main; sys.exit(main())"]
    return cmd


def _memfd(name: str, data: bytes) -> int:
    """A memfd holding ``data``, at offset 0 (for bwrap to read)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Sandboxed:
    """A running sandboxed child: output drained with a size cap, killed as a whole tree (and cgroup).

    bwrap's arguments after ``bwrap`` go through a memfd (``--args FD``, read
    and closed by bwrap before the sandbox starts); the child joins a fresh
    :class:`~.cgroup.RunCgroup` first when :func:`~.cgroup.cgroup_status` allows.
    """

    def __init__(self, cmd: list[str], fd: int, limits: Limits):
        from .cgroup import RunCgroup, cgroup_status
        self.limits = limits
        self.output = bytearray()
        self.dropped = 0
        at = next(i for i, a in enumerate(cmd) if Path(a).name == "bwrap") + 1
        end = cmd.index("--", at)                 # bwrap's options go through the fd, the command stays
        options, fds = cmd[at:end], [fd]
        filt = seccomp.program()
        if filt is not None:                      # no memfds, no keyrings inside (.seccomp)
            fds.append(_memfd("cryoopt-seccomp", filt))
            options = [*options, "--seccomp", str(fds[-1])]
        fds.append(_memfd("cryoopt-bwrap-args", b"".join(a.encode() + b"\0" for a in options)))
        cmd = [*cmd[:at], "--args", str(fds[-1]), *cmd[end:]]
        self.cgroup = None if cgroup_status() is not None else RunCgroup(limits.sandbox_memory_bytes,
                                                                          limits.processes)
        try:
            self.proc = subprocess.Popen(cmd if self.cgroup is None else self.cgroup.wrap(cmd), pass_fds=fds,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except BaseException:
            if self.cgroup is not None:
                self.cgroup.remove()
            raise
        finally:
            for extra in fds[1:]:
                os.close(extra)
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(1 << 16):
            room = self.limits.output_bytes - len(self.output)
            self.output += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)

    def kill(self) -> None:
        """SIGKILL the process group (bwrap and its PID namespace, hence every process inside)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.cgroup is not None:
            self.cgroup.kill()
        self.proc.wait()
        self._drain.join(timeout=5)

    def text(self) -> str:
        out = self.output.decode(errors="replace")
        return out + (f"\n[... {self.dropped} more bytes of output dropped]" if self.dropped else "")


@functools.lru_cache(maxsize=1)
def sandbox_status() -> str | None:
    """None when the sandbox works here, else why not (checked once per process by running it)."""
    import socket
    try:
        with tempfile.TemporaryDirectory(prefix="cryoopt-stage-") as tmp:
            staging = stage(Path(tmp) / "app")
            a, b = socket.socketpair()
            child = Sandboxed(command(staging, None, Limits(), b.fileno()), b.fileno(), Limits())
            b.close()
            from .wire import recv, send
            send(a, {"op": "ping"})
            a.settimeout(60)
            try:
                recv(a, 0)
            except Exception:
                pass
            child.kill()
            a.close()
            if "unknown request 'ping'" not in child.text():
                return f"the sandbox did not start: {child.text().strip()[-500:] or 'no output'}"
    except SandboxUnavailable as exc:
        return str(exc)
    except OSError as exc:
        return f"the sandbox did not start: {exc}"
    return None
