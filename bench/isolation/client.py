"""The oracle as the sandboxed optimizer sees it: a client of the oracle server.

:class:`OracleClient` implements :class:`problems.protocol.Oracle` by sending
each call over the socket the harness handed to the sandbox; the server
validates, charges and computes.  Densities and gradients go through shared
memory (a memfd mapped by both sides) when the server provides it, the rest
as raw arrays on the socket.  Nothing here is trusted: the optimizer owns
this process and may replace any of it, so every check that matters happens
in :mod:`bench.isolation.server`.  This module (with :mod:`.wire` and
:mod:`.child`) is copied into the sandbox and imports only numpy and
``problems.protocol``.
"""
from __future__ import annotations

import mmap
import socket
import threading

import numpy as np

from problems.protocol import BudgetExhausted, EStepStatistics, NonFiniteInput, OracleInputError

from .wire import recv, send

_ERRORS = {"BudgetExhausted": BudgetExhausted, "NonFiniteInput": NonFiniteInput,
           "OracleInputError": OracleInputError}


class OracleClient:
    """Remote :class:`~problems.protocol.Oracle` (costs are charged by the server).

    Parameters
    ----------
    sock : socket.socket
        Connected to the oracle server.
    n_train, shape, budget
        As announced by the server.
    """

    def __init__(self, sock: socket.socket, n_train: int, shape: tuple, budget: float | None):
        self._sock = sock
        self.n_train = int(n_train)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(np.float32)
        self._budget = budget
        self._evals = 0.0
        self.refused = False                   # the server refused a call for budget
        self._lock = threading.Lock()          # one request/answer at a time, from any thread
        self._shm = None
        nbytes = int(np.prod(self.shape)) * 8
        self._max_payload = 8 * nbytes + (1 << 20)

    @property
    def evals(self) -> float:
        return self._evals

    @property
    def budget(self) -> float | None:
        return self._budget

    @property
    def remaining(self) -> float:
        return np.inf if self._budget is None else self._budget - self._evals

    def _x(self, x) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise OracleInputError(f"x has dtype {arr.dtype}, expected real numbers")
        return arr.astype(np.float32, copy=False)

    @staticmethod
    def _idx(idx) -> np.ndarray:
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu":
            raise OracleInputError(f"idx has dtype {arr.dtype}, expected integers")
        return arr.astype(np.int64, copy=False)

    def attach(self, fd: int) -> None:
        """Map the shared buffers (x, v, out: three densities) the server also maps."""
        n = int(np.prod(self.shape))
        self._map = mmap.mmap(fd, 3 * 4 * n)
        self._shm = [np.frombuffer(self._map, np.float32, n, 4 * n * i).reshape(self.shape) for i in range(3)]

    def call(self, op: str, arrays=(), densities=(), **fields):
        """One request and its answer; server errors re-raised as the protocol's exceptions.

        ``densities`` (x, and v for hvp) travel through the shared buffers when
        they are mapped and have the problem's shape, else as arrays before ``arrays``.
        """
        with self._lock:                    # one request at a time, and one user of the buffers
            shm = self._shm
            if shm is not None and densities and all(d.shape == self.shape for d in densities):
                for buf, d in zip(shm, densities):
                    np.copyto(buf, d, casting="same_kind")
                fields["shm"] = True
            else:
                arrays = (*densities, *arrays)
            send(self._sock, {"op": op, **fields}, arrays)
            header, out = recv(self._sock, self._max_payload)
            if header.get("out") == "shm" and shm is not None:
                out = [shm[2].copy()]
        self._evals = float(header.get("evals", self._evals))
        if "error" in header:
            self.refused = self.refused or header["error"] == "BudgetExhausted"
            raise _ERRORS.get(header["error"], RuntimeError)(header.get("message", header["error"]))
        return header, out

    def value(self, x, idx) -> float:
        return float(self.call("value", (self._idx(idx),), (self._x(x),))[0]["value"])

    def value_and_grad(self, x, idx):
        header, out = self.call("value_and_grad", (self._idx(idx),), (self._x(x),))
        return float(header["value"]), out[0]

    def hvp(self, x, v, idx):
        return self.call("hvp", (self._idx(idx),), (self._x(x), self._x(v)))[1][0]

    def expectation(self, x, idx, hard: bool = False) -> EStepStatistics:
        header, out = self.call("expectation", (self._x(x), self._idx(idx)), hard=bool(hard))
        return EStepStatistics(out[0], out[1], int(header["count"]))

    def m_step(self, stats: EStepStatistics, x0, max_iter: int = 30):
        if not isinstance(stats, EStepStatistics):
            raise OracleInputError("m_step needs EStepStatistics from expectation()")
        za = np.asarray(stats.za, dtype=np.complex128 if np.iscomplexobj(stats.za) else np.float64)
        zq = np.asarray(stats.zq, dtype=np.complex128 if np.iscomplexobj(stats.zq) else np.float64)
        return self.call("m_step", (za, zq, self._x(x0)), count=int(stats.count), max_iter=int(max_iter))[1][0]

    def next_batch(self, size: int) -> np.ndarray:
        return self.call("next_batch", size=int(size))[1][0]

    def __repr__(self) -> str:
        return f"OracleClient(n_train={self.n_train}, evals={self._evals:g})"


def receive_start(sock: socket.socket) -> tuple[dict, np.ndarray, OracleClient]:
    """The server's start message (after ``run``'s header), the initial density and a connected client."""
    header, arrays = recv(sock, 1 << 31)
    return header, arrays[0], connect(sock, header)


def connect(sock: socket.socket, header: dict) -> OracleClient:
    client = OracleClient(sock, header["n_train"], header["shape"], header["budget"])
    if header.get("shm") is True:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        client.attach(fds[0])
    return client
