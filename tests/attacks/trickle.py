"""Stretch the harness's wall-clock limits by trickling a message one byte at a time (issue 22, guarantee 2).

At import (``describe``, mode ``describe``) or in the first step (mode
``request``) it writes a frame prefix announcing a 60-byte header on the
sandbox's socket, then one byte every half second: a per-read time-out never
fires, only a deadline for the whole message does.
"""
import os
import socket
import struct
import time
from dataclasses import dataclass

MODE = "__MARKER__"


def trickle():
    sock = socket.socket(fileno=os.dup(int(os.environ["CRYOOPT_FD"])))
    sock.sendall(struct.pack("<IQ", 60, 0))
    for _ in range(60):
        time.sleep(0.5)
        sock.sendall(b" ")
    print("SUCCEEDED: trickled a whole header", flush=True)


if MODE == "describe" and "CRYOOPT_FD" in os.environ:   # only when submitted
    trickle()


@dataclass(frozen=True)
class Attack:
    name = "attack-trickle"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        if MODE == "request":
            trickle()
        return x - g, state + 1
