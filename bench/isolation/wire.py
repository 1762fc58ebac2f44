"""The wire format between the sandboxed optimizer, the oracle server and the harness.

A message is a frame ``[u32 header length][u64 payload length][JSON header][payload]``
over a Unix socket.  The header is a JSON object; its ``"arrays"`` entry
lists ``[dtype, shape]`` of the arrays packed back to back in the payload,
as raw little-endian bytes (float32/64, complex64/128, int64).  Only the dtypes in :data:`DTYPES` are accepted,
sizes are checked against the payload and against the receiver's limits (in
Python integers: a shape whose int64 product would wrap around is refused, not
allocated), and nothing is unpickled or executed: a hostile peer can send wrong
numbers, never code.  A receiver may give a wall-clock ``deadline``
(``time.monotonic()`` seconds) for the whole frame: each read waits only for
the time left, so a peer trickling one byte at a time cannot stretch it.
This module runs on both sides of the sandbox, so it imports numpy only.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import time

import numpy as np

DTYPES = {name: np.dtype(name) for name in ("<f4", "<f8", "<c8", "<c16", "<i8")}
_PREFIX = struct.Struct("<IQ")
MAX_HEADER = 1 << 16
MAX_ARRAYS = 16


class ProtocolViolation(RuntimeError):
    """The peer sent something that is not a well-formed message within the limits."""


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


class DeadlinePassed(TimeoutError):
    """The peer did not deliver a whole frame before the receiver's deadline."""


def _wire_dtype(arr: np.ndarray) -> str:
    for name, dt in DTYPES.items():
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            return name
    raise TypeError(f"arrays on the wire must be float32/64, complex64/128 or int64, got {arr.dtype}")


def send(sock: socket.socket, header: dict, arrays: tuple | list = ()) -> None:
    """Send ``header`` (JSON-serialisable dict) and ``arrays`` (raw bytes) as one frame."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    meta = [[_wire_dtype(a), list(a.shape)] for a in arrays]
    head = json.dumps({**header, "arrays": meta}, allow_nan=True).encode()
    if len(head) > MAX_HEADER:
        raise ValueError(f"message header of {len(head)} bytes exceeds {MAX_HEADER}")
    views = [memoryview(a.astype(DTYPES[m[0]], copy=False)).cast("B") for a, m in zip(arrays, meta)]
    sock.sendall(_PREFIX.pack(len(head), sum(v.nbytes for v in views)) + head)
    for v in views:
        sock.sendall(v)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlinePassed(f"no complete message before the deadline ({got} of {n} bytes)")
            sock.settimeout(left)
        try:
            k = sock.recv_into(view[got:], n - got)
        except socket.timeout:
            raise DeadlinePassed(f"no complete message before the deadline ({got} of {n} bytes)") from None
        if k == 0:
            raise PeerClosed("peer closed the connection")
        got += k
    return buf


def recv(sock: socket.socket, max_payload: int, deadline: float | None = None) -> tuple[dict, list[np.ndarray]]:
    """Receive one frame; returns ``(header, arrays)`` (arrays are fresh, writable copies).

    ``deadline``: ``time.monotonic()`` by which the whole frame must have arrived (None: wait).

    Raises
    ------
    PeerClosed
        On end of stream.
    DeadlinePassed
        When the frame is not complete by ``deadline``.
    ProtocolViolation
        On an oversized, malformed or inconsistent frame.
    """
    head_len, payload_len = _PREFIX.unpack(bytes(_recv_exact(sock, _PREFIX.size, deadline)))
    if head_len > MAX_HEADER or payload_len > max_payload:
        raise ProtocolViolation(f"frame of {head_len} + {payload_len} bytes exceeds the limits "
                                f"({MAX_HEADER} + {max_payload})")
    try:
        header = json.loads(_recv_exact(sock, head_len, deadline).decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolViolation(f"header is not JSON ({exc})") from None
    if (not isinstance(header, dict) or not isinstance(header.get("arrays", []), list)
            or len(header.get("arrays", [])) > MAX_ARRAYS):
        raise ProtocolViolation(f"header must be a JSON object with a list 'arrays' of at most {MAX_ARRAYS}")
    payload = _recv_exact(sock, payload_len, deadline)
    arrays, offset = [], 0
    for item in header.pop("arrays", []):
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str) or item[0] not in DTYPES
                or not isinstance(item[1], list) or len(item[1]) > 4
                or not all(type(d) is int and 0 <= d <= payload_len for d in item[1])):
            raise ProtocolViolation(f"bad array description {str(item)[:80]}")
        dt = DTYPES[item[0]]
        nbytes = dt.itemsize * math.prod(item[1])        # Python integers: no wrap-around
        if offset + nbytes > payload_len:
            raise ProtocolViolation("array descriptions exceed the payload")
        arrays.append(np.frombuffer(payload, dtype=dt, count=nbytes // dt.itemsize, offset=offset)
                      .reshape(item[1]))
        offset += nbytes
    if offset != payload_len:
        raise ProtocolViolation("payload longer than its array descriptions")
    return header, arrays
