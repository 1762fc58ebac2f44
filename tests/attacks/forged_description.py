"""Answer ``describe`` with hand-made JSON instead of the child's (issue 22, guarantee 3).

At import the module writes its own reply on the sandbox's socket before the
child can; ``__MARKER__`` picks which lie: ``not-a-range`` (a search-space
entry that is a number, which once crashed the harness), ``huge-range``
(log-uniform over [1e-300, 1e300], which sampled to inf), ``control-text``
(a string default with an ANSI escape and markup).
"""
import json
import os
import socket
import struct
from dataclasses import dataclass

LIES = {
    "not-a-range": {"defaults": {"lr": 1.0}, "search_space": {"lr": 5}},
    "huge-range": {"defaults": {"lr": 1.0}, "search_space": {"lr": {"low": 1e-300, "high": 1e300, "scale": "log"}}},
    "control-text": {"defaults": {"mode": "\x1b[2J<script>alert(1)</script>|"}, "search_space": {}},
}
MODE = "__MARKER__"
if MODE in LIES and "CRYOOPT_FD" in os.environ:         # only when submitted (not when a tool imports it)
    head = json.dumps({"ok": True, "name": "attack-forged", **LIES[MODE], "arrays": []}).encode()
    sock = socket.socket(fileno=os.dup(int(os.environ["CRYOOPT_FD"])))
    sock.sendall(struct.pack("<IQ", len(head), 0) + head)


@dataclass(frozen=True)
class Attack:
    name = "attack-forged"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
