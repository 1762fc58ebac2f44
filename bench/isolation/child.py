"""What runs inside the sandbox: load the submission, describe it or run it against the oracle server.

Started by :mod:`bench.isolation.sandbox` as ``python -c ...`` with the
connection on the file descriptor named by ``CRYOOPT_FD``; the first message
on it says what to do (``describe`` or ``run``), so tuning and scored runs
are indistinguishable from argv and environment.  The optimizer owns this
process: whatever this module reports is treated as a claim by the harness
(status messages are displayed, never trusted; the density is its answer).

The run's verdict is the oracle server's (:mod:`bench.isolation.server`):
it ends a run ``finished`` only when it refuses a call for budget with less
than the cheapest request left.  An optimizer whose fixed-size request is
refused with more left (e.g. a batch of 100 with 50 evaluations left)
forfeits the rest: :func:`run` spends it on one batch of values (the
density does not change) so that the server sees the budget spent, exactly
as the in-process runner ends such a run.
"""
from __future__ import annotations

import inspect
import os
import socket
import sys
import traceback
from dataclasses import fields, is_dataclass

import numpy as np

from problems.protocol import COST_VALUE, BudgetExhausted, NonFiniteInput, OptimizerInfo

from .client import connect
from .wire import recv, send

_SCALARS = (bool, int, float, str, type(None))


def describe(spec: str) -> dict:
    """Load and check the class; return its name, default hyperparameters and search space (plain data).

    Raises ValueError with a clear message on any problem.
    """
    from optimizers import get_optimizer_class
    try:
        cls = get_optimizer_class(spec)
    except Exception as exc:
        raise ValueError(f"cannot load optimizer {spec!r}: {exc}") from exc
    if not isinstance(getattr(cls, "name", None), str):
        raise ValueError(f"{spec}: the class needs a string attribute `name`")
    expected = {"init": ["x0", "info", "rng"], "step": ["x", "state", "oracle", "rng"]}
    for method, params in expected.items():
        fn = getattr(cls, method, None)
        if not callable(fn):
            raise ValueError(f"{spec}: missing method {method}({', '.join(params)})")
        got = [p for p in inspect.signature(fn).parameters if p != "self"]
        if len(got) != len(params):
            raise ValueError(f"{spec}: {method} must take ({', '.join(params)}), it takes ({', '.join(got)})")
    try:
        opt = cls()
    except Exception as exc:
        raise ValueError(f"{spec}: cannot construct with default hyperparameters ({exc})") from exc
    defaults = {f.name: getattr(opt, f.name) for f in fields(opt)} if is_dataclass(opt) else {}
    bad = [k for k, v in defaults.items() if not isinstance(v, _SCALARS)]
    if bad:
        raise ValueError(f"{spec}: hyperparameters must be numbers, strings or booleans ({', '.join(bad)})")
    space = getattr(cls, "search_space", {}) or {}
    if not isinstance(space, dict):
        raise ValueError(f"{spec}: search_space must be a dict of optimizers.Range")
    out_space = {}
    for key, rng in space.items():
        low, high, scale = getattr(rng, "low", None), getattr(rng, "high", None), getattr(rng, "scale", "log")
        if key not in defaults or not all(isinstance(v, (int, float)) for v in (low, high)):
            raise ValueError(f"{spec}: search_space[{key!r}] must be a Range over a hyperparameter")
        out_space[str(key)] = {"low": float(low), "high": float(high), "scale": str(scale)}
    return {"name": cls.name, "defaults": defaults, "search_space": out_space}


def run(sock: socket.socket, header: dict, x0: np.ndarray) -> None:
    """Construct, init and step the optimizer until the server refuses (budget spent)."""
    from optimizers import get_optimizer
    client = connect(sock, header)
    opt = get_optimizer(header["spec"], **header["hyper"])
    rng = np.random.default_rng([int(header["seed"]), 0xC0FFEE])
    x = x0.astype(np.float32)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            info = OptimizerInfo(client.n_train, client.shape, client.budget, header.get("curvature"))
            state = opt.init(x.copy(), info, rng)
            while True:
                try:
                    x, state = opt.step(x, state, client, rng)
                except BudgetExhausted:
                    break
                x = np.asarray(x, dtype=np.float32)
                client.call("step", (x,))
        if client.refused:
            spend_the_rest(client, x)
    except (BudgetExhausted, NonFiniteInput, OSError):
        return                                  # the server has ended the run (its verdict)
    except Exception as exc:
        # the submission's own frames (file and line) say where it failed; the child's are left out
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("/app/cryoopt_child")]
        where = "".join(f"\n  at {f.filename}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
                        for f in frames[-3:])
        _tell(sock, {"op": "error", "message": ("".join(traceback.format_exception_only(exc)).strip() + where)[:2000]})
        return
    _tell(sock, {"op": "done"})                 # only reached if the server did not end the run: an error


def spend_the_rest(client, x: np.ndarray) -> None:
    """After a refusal for budget: values on as many images as the rest pays for, then one more (refused).

    The server ends the run ``finished`` at that last refusal (its rule: less
    than one image's value left).  Nothing is spent when nothing was (an
    oversized first request stays an error).
    """
    if client.evals <= 0:
        return
    n = int(client.remaining // COST_VALUE)
    if n > 0:
        client.value(x, np.arange(n, dtype=np.int64) % client.n_train)
    client.value(x, np.zeros(1, dtype=np.int64))


def _tell(sock: socket.socket, header: dict) -> None:
    try:
        send(sock, header)
    except OSError:
        pass


def main() -> int:
    sock = socket.socket(fileno=int(os.environ["CRYOOPT_FD"]))
    header, arrays = recv(sock, max_payload=1 << 30)
    if header.get("op") == "describe":
        try:
            send(sock, {"ok": True, **describe(header["spec"])})
        except Exception as exc:
            send(sock, {"ok": False, "message": str(exc)[:2000]})
        return 0
    if header.get("op") == "run":
        run(sock, header, arrays[0])
        return 0
    print(f"unknown request {header.get('op')!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
