"""Shrink the shared memfd so the oracle server's next access is a SIGBUS (issue 22, guarantee 3)."""
import os
from dataclasses import dataclass


def shrink():
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "cryoopt-oracle" in os.readlink(f"/proc/self/fd/{fd}"):
                os.ftruncate(int(fd), 0)
                print("SUCCEEDED: shrank the shared buffers", flush=True)
                return
        except OSError as exc:
            print(f"BLOCKED: {type(exc).__name__}: {exc}", flush=True)
            return
    print("BLOCKED: no shared buffers found", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-shrink"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            shrink()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
