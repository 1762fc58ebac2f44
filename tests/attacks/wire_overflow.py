"""Crash the oracle server with a frame whose array shape overflows int64 (issue 22, guarantee 3).

The shape (2**32, 2**32, 2**32) has 2**96 elements: as an int64 product it
wraps to 0, which once passed the size check and crashed the server in
``reshape`` (the run then ended "oracle server failed" with a traceback).
"""
import json
import os
import socket
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-overflow"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        head = json.dumps({"op": "value", "arrays": [["<f8", [2**32, 2**32, 2**32]]]}).encode()
        sock = socket.socket(fileno=os.dup(int(os.environ["CRYOOPT_FD"])))
        sock.sendall(struct.pack("<IQ", len(head), 0) + head)
        print("SENT: overflowing shape", flush=True)
        sock.recv(1 << 16)
        return x - g, state + 1
