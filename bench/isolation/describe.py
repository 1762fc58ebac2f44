"""Describing a submitted class without importing it: ask the sandbox, check every field of the answer.

:func:`describe` starts a sandboxed child that loads the class and answers
with plain JSON (name, defaults, search space).  The submission owns that
child -- its module runs there and may write on the socket itself -- so
the answer is checked field by field (:func:`check_description`) and the
read has a wall-clock deadline for the whole answer (a peer that trickles a
byte at a time cannot stretch it; :func:`bench.isolation.wire.recv`).
Whatever goes wrong is a :class:`ValueError` with a short, escaped reason
(``cryoopt submit: not scored: ...``), never a traceback.
"""
from __future__ import annotations

import math
import re
import socket
import tempfile
import time
from pathlib import Path

from bench.score.text import plain

from .sandbox import Limits, Sandboxed, SandboxUnavailable, check_not_exposed, command, python_roots
from .sandbox import sandbox_status, stage
from .wire import PeerClosed, ProtocolViolation, recv, send

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
TEXT_RE = re.compile(r"[ -~]{0,64}")                  # printable ASCII: string hyperparameters
MAX_ABS = 1e300                                         # finite numbers only, with room to compute
MAX_INT = 1 << 53


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` (with the reason) unless the sandbox works here."""
    why = sandbox_status()
    if why is not None:
        raise SandboxUnavailable(f"cannot score submitted optimizers without the sandbox: {why}")


def split_spec(spec: str) -> tuple[Path, str]:
    path, sep, cls = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not cls.isidentifier():
        raise ValueError(f"submission {plain(spec, 200)!r}: expected path/to/file.py:ClassName")
    file = Path(path).resolve()
    if not file.is_file():
        raise ValueError(f"submission file {plain(file, 300)} not found")
    return file, cls


def protected_paths(extra) -> list[Path]:
    """Folders the sandbox must never see: the data cache, the results, the repository, plus ``extra``."""
    from problems.data.cache import cache_dir
    return [cache_dir(), Path(__file__).resolve().parents[2], *(Path(p) for p in extra)]


def not_from_protected(submission: Path, protected: list[Path]) -> None:
    """Refuse a submission file (after symlinks) inside the cache or results: binding it would expose it."""
    for p in protected[:1] + protected[2:]:              # the repository may hold submissions (examples/)
        if submission == Path(p).resolve() or Path(p).resolve() in submission.parents:
            raise ValueError(f"submission {submission} lies inside {p}; copy it elsewhere first")


def start(submission: Path, limits: Limits, protected: list[Path], tmp: Path) -> tuple[Sandboxed, socket.socket]:
    not_from_protected(submission, protected)
    staging = stage(tmp / "app")
    check_not_exposed(["/usr", "/lib", "/bin", *python_roots(), str(staging), str(submission)], protected)
    mine, theirs = socket.socketpair()
    child = Sandboxed(command(staging, submission, limits, theirs.fileno()), theirs.fileno(), limits)
    theirs.close()
    return child, mine


def _number(value, what: str, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > (MAX_INT if integer else MAX_ABS):
        raise ValueError(f"{what}: expected a finite number of magnitude <= {MAX_INT if integer else MAX_ABS:g}")
    return value


def check_description(d) -> dict:
    """Validate, field by field, the plain data a sandboxed child returned about a class.

    ``name``: 1-64 of ``[A-Za-z0-9_.+-]``; ``defaults``: at most 64
    identifiers mapped to booleans, integers (``|v| <= 2**53``), finite
    floats (``|v| <= 1e300``), printable ASCII strings of at most 64
    characters, or null; ``search_space``: for some of those names a
    ``{"low", "high", "scale"}`` with finite ``low < high`` (``> 0`` for
    ``scale = "log"``).  Anything else raises ``ValueError``.
    """
    if not isinstance(d, dict):
        raise ValueError("the description is not a JSON object")
    name = d.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"optimizer name {plain(name, 80, newlines=False)!r}: use 1-64 letters, digits, '_.+-'")
    defaults, space = d.get("defaults"), d.get("search_space")
    if not isinstance(defaults, dict) or len(defaults) > 64:
        raise ValueError("defaults: expected at most 64 named hyperparameters")
    for key, value in defaults.items():
        if not KEY_RE.fullmatch(key):
            raise ValueError(f"hyperparameter name {plain(key, 80, newlines=False)!r}: expected an identifier")
        if isinstance(value, str):
            if not TEXT_RE.fullmatch(value):
                raise ValueError(f"defaults[{key!r}]: strings must be at most 64 printable ASCII characters")
        elif value is not None and not isinstance(value, bool):
            _number(value, f"defaults[{key!r}]", integer=isinstance(value, int))
    if not isinstance(space, dict) or len(space) > 64:
        raise ValueError("search_space: expected an object")
    checked = {}
    for key, r in space.items():
        if key not in defaults or not isinstance(r, dict) or set(r) != {"low", "high", "scale"}:
            raise ValueError(f"search_space[{plain(key, 80, newlines=False)!r}]: expected "
                             "{low, high, scale} over a hyperparameter")
        integer = isinstance(defaults[key], int) and not isinstance(defaults[key], bool)
        lo, hi = (_number(r[k], f"search_space[{key!r}].{k}", integer) for k in ("low", "high"))
        if not (lo < hi and r["scale"] in ("log", "linear") and (r["scale"] == "linear" or lo > 0)):
            raise ValueError(f"search_space[{key!r}]: need low < high (> 0 for log), scale log|linear")
        checked[key] = {"low": float(lo), "high": float(hi), "scale": r["scale"]}
    return {"name": name, "defaults": dict(defaults), "search_space": checked}


def describe(spec: str, *, timeout: float = 60.0, limits: Limits = Limits(), protected=()) -> dict:
    """Load and check a submitted class inside the sandbox; returns its checked description.

    Raises ValueError with a short, escaped reason when the class is unusable
    or its answer is malformed or late (``timeout`` seconds for the whole answer).
    """
    require_sandbox()
    file, cls = split_spec(spec)
    protected = protected_paths(protected)
    with tempfile.TemporaryDirectory(prefix="cryoopt-describe-") as tmp:
        child, sock = start(file, limits, list(protected), Path(tmp))
        try:
            deadline = time.monotonic() + timeout
            send(sock, {"op": "describe", "spec": f"/submission/{file.name}:{cls}"})
            header, _ = recv(sock, 0, deadline)
        except (OSError, PeerClosed, ProtocolViolation) as exc:
            raise ValueError(f"{plain(spec, 300)}: the class could not be described ({type(exc).__name__}); "
                             f"output: {plain(child.text()[-500:])}") from None
        finally:
            child.kill()
            sock.close()
    if header.get("ok") is not True:
        raise ValueError(plain(header.get("message", "invalid class")))
    return check_description(header)


__all__ = ["SandboxUnavailable", "check_description", "describe", "require_sandbox"]
