"""The oracle server: the only process that holds the training images, the counter and the budget.

``python -m bench.isolation.server CONTROL_FD OPTIMIZER_FD`` (started by
:mod:`bench.isolation.harness`).  The harness sends the run's specification
on the control socket; the server loads the problem, keeps only its
:class:`~problems.oracle.CountingOracle` (the held-out images are dropped
before the optimizer starts), sends the optimizer its start message and
then answers its requests (:mod:`bench.isolation.wire`: JSON headers and raw
arrays, nothing unpickled).  Every answer carries the counter; a call that
would exceed the budget is refused with ``BudgetExhausted``.

At each step boundary the optimizer sends its density; when the counter has
crossed the next point of the harness's schedule the server forwards it to
the harness and waits for the acknowledgement (evaluation time is not
optimizer time).  At the end it reports the facts it owns -- cost, calls,
the verdict, the last density -- and exits.

**The verdict is the server's own** (issue 22); nothing the optimizer says ends a run well:

* ``finished`` -- the server refused a call for budget with ``evals > 0``
  and less budget left than the cheapest request (:data:`CHEAPEST`: one
  image's value), i.e. the budget is spent;
* ``diverged`` -- the server saw a non-finite density (a step's density, or
  ``NonFiniteInput`` on a request); the harness scores it +inf;
* ``timeout`` -- no complete request before the run's deadline (a
  trickling peer cannot stretch it: :func:`bench.isolation.wire.recv`);
* ``error`` -- everything else: the optimizer reporting ``done`` or an error
  itself, a refusal of an oversized first request, a malformed frame, or any
  exception while handling a request (the server never dies with a traceback).
"""
from __future__ import annotations

import gc
import mmap
import os
import socket
import sys
import time

import numpy as np

from problems.protocol import (COST_EXPECTATION, COST_GRADIENT, COST_HVP, COST_VALUE, BudgetExhausted,
                               NonFiniteInput, OracleInputError)

from .wire import DeadlinePassed, PeerClosed, ProtocolViolation, recv, send

_COSTS = {"value": COST_VALUE, "value_and_grad": COST_GRADIENT, "hvp": COST_HVP, "expectation": COST_EXPECTATION}
CHEAPEST = min(_COSTS.values())
"""Cost of the cheapest charged request (one image's value): a budget with less left is spent."""


class _Session:
    """State of one served run (see module docstring)."""

    def __init__(self, oracle, checkpoints: list[float], control: socket.socket, opt: socket.socket,
                 timeout: float | None = None):
        from problems.protocol import EStepStatistics
        self.stats_type = EStepStatistics
        self.oracle, self.control, self.opt = oracle, control, opt
        self.checkpoints = sorted(float(c) for c in checkpoints)
        self.next_cp = 0
        self.calls = {k: 0 for k in _COSTS}
        self.ledger = 0.0
        self.shm = None                   # views (x, v, out) of the memfd shared with the optimizer
        self.shm_calls = 0
        self.stats_layout = None          # (shape, dtype) of za, zq as expectation returns them
        self.exhausted = False
        self.last_step_evals = 0.0
        self.steps, self.max_step_cost = 0, 0.0     # completed steps, for the record's budget verdict
        self.wall = 0.0
        self.max_payload = 64 * int(np.prod(oracle.shape)) * 4 + (64 << 20)
        self.timeout = timeout

    # ------------------------------------------------------------ one request
    def _x(self, arr: np.ndarray, what: str) -> np.ndarray:
        if arr.shape != tuple(self.oracle.shape):
            raise OracleInputError(f"{what} has shape {arr.shape}, expected {tuple(self.oracle.shape)}")
        return arr

    def _charged(self, op: str, idx: np.ndarray, fn):
        before = self.oracle.evals
        try:
            out = fn()
        except BudgetExhausted:
            # the run ends here, well, only if the budget is really spent (not an oversized first request)
            self.exhausted = before > 0 and self.oracle.remaining < CHEAPEST
            raise
        self.calls[op] += 1
        self.ledger += _COSTS[op] * np.asarray(idx).size
        if self.oracle.evals < before:
            raise RuntimeError("oracle counter decreased")
        return out

    def answer(self, op: str, h: dict, a: list[np.ndarray]) -> tuple[dict, list]:
        """Densities from / results into the shared buffers when the request says so (``shm``).

        The server reads x (and v) in place: the optimizer could change them
        mid-call, which only spoils its own answer (the cost is charged first,
        and the likelihood never indexes memory by the density's values).
        """
        shm = h.get("shm") is True and self.shm is not None and op in ("value", "value_and_grad", "hvp")
        if shm:
            self.shm_calls += 1
            a = [self.shm[0], *([self.shm[1]] if op == "hvp" else []), *a]
        reply, out = self._answer(op, h, a)
        if shm and out:
            np.copyto(self.shm[2], out[0], casting="same_kind")
            reply, out = {**reply, "out": "shm"}, []
        return reply, out

    def _answer(self, op: str, h: dict, a: list[np.ndarray]) -> tuple[dict, list]:
        o = self.oracle
        if op == "value":
            return {"value": self._charged(op, a[1], lambda: o.value(self._x(a[0], "x"), a[1]))}, []
        if op == "value_and_grad":
            val, grad = self._charged(op, a[1], lambda: o.value_and_grad(self._x(a[0], "x"), a[1]))
            return {"value": val}, [grad]
        if op == "hvp":
            return {}, [self._charged(op, a[2], lambda: o.hvp(self._x(a[0], "x"), self._x(a[1], "v"), a[2]))]
        if op == "expectation":
            stats = self._charged(op, a[1], lambda: o.expectation(self._x(a[0], "x"), a[1], hard=h.get("hard") is True))
            self.stats_layout = (stats.za.shape, stats.za.dtype, stats.zq.shape, stats.zq.dtype)
            return {"count": stats.count}, [stats.za, stats.zq]
        if op == "m_step":
            layout, count = self.stats_layout, h.get("count")
            if layout is None or a[0].shape != layout[0] or a[1].shape != layout[2]:
                raise OracleInputError("m_step needs EStepStatistics from expectation()")
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1 << 40:
                raise OracleInputError("m_step: count must be a positive integer")
            if not (np.isfinite(a[0]).all() and np.isfinite(a[1]).all()):
                raise NonFiniteInput("m_step: statistics contain NaN or infinite values")
            max_iter = h.get("max_iter", 30)
            if not isinstance(max_iter, int) or not 1 <= max_iter <= 1000:
                raise OracleInputError("m_step: max_iter must be an integer in [1, 1000]")
            stats = self.stats_type(a[0].astype(layout[1]), a[1].astype(layout[3]), count)
            return {}, [o.m_step(stats, self._x(a[2], "x0"), max_iter=max_iter)]
        if op == "next_batch":
            size = h.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size > 64 * o.n_train:
                raise OracleInputError(f"next_batch: size must be an integer <= {64 * o.n_train}")
            return {}, [o.next_batch(size)]
        raise ProtocolViolation(f"unknown request {str(op)[:40]!r}")

    # ------------------------------------------------------------ step boundaries
    def step(self, a: list[np.ndarray]) -> str | None:
        """A step boundary; returns a terminal status message, or None to continue."""
        if len(a) != 1 or a[0].shape != tuple(self.oracle.shape):
            raise ProtocolViolation("step: expected one density of the problem's shape")
        x = a[0].astype(np.float32)
        self.last_x = x
        if not np.isfinite(x).all():
            return "diverged"
        if self.oracle.evals == self.last_step_evals:
            raise ProtocolViolation("the optimizer made a step that evaluated nothing")
        self.steps += 1
        self.max_step_cost = max(self.max_step_cost, self.oracle.evals - self.last_step_evals)
        self.last_step_evals = self.oracle.evals
        if self.next_cp < len(self.checkpoints) and self.oracle.evals >= self.checkpoints[self.next_cp]:
            self.next_cp = int(np.searchsorted(self.checkpoints, self.oracle.evals, side="right"))
            self.report("checkpoint", x)
            recv(self.control, 0)               # the harness's acknowledgement
        return None

    def report(self, op: str, x: np.ndarray, **extra) -> None:
        send(self.control, {"op": op, "evals": self.oracle.evals, "wall_time": self.wall,
                            "train_objective": self.oracle.last_value, **extra}, [x])

    def serve(self) -> tuple[str, str]:
        """Answer requests until the server's verdict (module docstring); returns (status, message)."""
        t0 = time.perf_counter()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                header, arrays = recv(self.opt, self.max_payload, deadline)
            except PeerClosed:
                return "error", "the optimizer process ended before the server ended the run"
            except DeadlinePassed:
                return "timeout", f"no complete request within {self.timeout:g} s"
            except ProtocolViolation as exc:
                return "error", f"protocol violation: {exc}"
            op = header.get("op")
            if op in ("done", "error"):
                said = str(header.get("message", ""))[:500]
                return "error", (f"the optimizer ended the run itself ({op}{': ' + said if said else ''}) "
                                 f"after {self.oracle.evals:g} of {self.oracle.budget} evaluations")
            try:
                if op == "step":
                    self.wall += time.perf_counter() - t0
                    verdict = self.step(arrays)
                    t0 = time.perf_counter()
                    if verdict is not None:
                        return verdict, f"non-finite density after {self.oracle.evals:g} evaluations"
                    reply, out = {}, []
                else:
                    reply, out = self.answer(op, header, arrays)
            except NonFiniteInput as exc:
                try:
                    send(self.opt, {"error": "NonFiniteInput", "message": str(exc), "evals": self.oracle.evals})
                except OSError:
                    pass
                return "diverged", f"non-finite input after {self.oracle.evals:g} evaluations ({exc})"[:500]
            except (BudgetExhausted, OracleInputError) as exc:
                reply, out = {"error": type(exc).__name__, "message": str(exc)}, []
            except ProtocolViolation as exc:
                return "error", f"protocol violation: {exc}"
            except (IndexError, TypeError, ValueError) as exc:
                reply, out = {"error": "OracleInputError", "message": f"{op}: {exc}"[:500]}, []
            except Exception as exc:          # anything else a hostile request provokes ends the run, not the server
                return "error", f"the oracle server refused the request ({type(exc).__name__}: {exc})"[:500]
            try:
                send(self.opt, {**reply, "evals": self.oracle.evals}, out)
            except OSError:
                return "error", "the optimizer process ended before the server ended the run"
            if self.exhausted:
                self.wall += time.perf_counter() - t0
                return "finished", ""


def main(argv: list[str]) -> int:
    return serve(socket.socket(fileno=int(argv[0])), socket.socket(fileno=int(argv[1])))


def serve(control: socket.socket, opt: socket.socket) -> int:
    """Serve one run on these two connections (see the module docstring)."""
    spec, _ = recv(control, 0)              # the data half: problem, instance seed, split, run seed
    if spec.get("cache"):                   # the harness's cache (a forked server has the forkserver's env)
        os.environ["CRYOOPT_CACHE"] = spec["cache"]
    if spec.get("device"):                  # the harness's --device: the oracle runs there, replies are numpy
        os.environ["CRYOOPT_DEVICE"] = spec["device"]
    from problems import load_problem
    problem = load_problem(spec["problem"], scale=spec["scale"], seed=spec["data_seed"], progress=False,
                           **spec.get("extra", {}))
    if spec.get("validation"):
        problem = problem.validation_split(spec["validation"], seed=spec["data_seed"])
    x0 = problem.initial_density(spec["seed"]).astype(np.float32)
    run, _ = recv(control, 0)               # the run half: budget, checkpoint schedule, the child's start message
    spec.update(run)
    oracle = problem.oracle(budget=spec["budget"])
    del problem                           # the held-out images go before the optimizer starts
    gc.collect()
    session = _Session(oracle, spec["checkpoints"], control, opt, spec.get("timeout"))
    shm_fd = None
    if spec.get("shm"):
        _, fds, _, _ = socket.recv_fds(control, 16, 1)
        shm_fd, n = fds[0], int(np.prod(oracle.shape))
        shared = mmap.mmap(shm_fd, 3 * 4 * n)
        session.shm = [np.frombuffer(shared, np.float32, n, 4 * n * i).reshape(oracle.shape) for i in range(3)]
    session.last_x = x0
    session.report("checkpoint", x0)
    recv(control, 0)
    try:
        send(opt, {"op": "run", **spec["child"], "n_train": oracle.n_train, "shape": list(oracle.shape),
                   "budget": oracle.budget, "shm": shm_fd is not None}, [x0])
        if shm_fd is not None:
            socket.send_fds(opt, [b"s"], [shm_fd])
            os.close(shm_fd)
        status, message = session.serve()
    except OSError:
        status, message = "error", "the optimizer process ended before the server ended the run"
    except Exception as exc:                  # never a traceback: the harness gets a verdict either way
        status, message = "error", f"the oracle server refused the run ({type(exc).__name__}: {exc})"[:500]
    if status == "finished" and abs(session.ledger - oracle.evals) > 1e-6 * max(1.0, oracle.evals):
        status, message = "error", f"ledger {session.ledger:g} != counter {oracle.evals:g}"
    session.report("end", session.last_x, status=status, message=message, calls=session.calls,
                   ledger=session.ledger, budget=oracle.budget, exhausted=session.exhausted,
                   steps=session.steps, max_step_cost=session.max_step_cost,
                   shared_memory_calls=session.shm_calls)
    opt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
