"""Hold memory the address-space limit does not see: 64 memfds of 64 MiB, written, never mapped (issue 22, guarantee 6).

Each memfd is filled with ``os.write`` (no mapping, so RLIMIT_AS does not
count it) and kept open; the attack prints how much it holds after each.
Without a per-sandbox memory limit it holds all 4,096 MiB.
"""
import os
from dataclasses import dataclass

CHUNK = b"\x01" * (1 << 20)


def hog():
    held, fds = 0, []
    for i in range(64):
        try:
            fd = os.memfd_create(f"hog{i}")
            fds.append(fd)
            for _ in range(64):
                os.write(fd, CHUNK)
                held += 1
        except OSError as exc:
            print(f"BLOCKED: {type(exc).__name__} after {held} MiB", flush=True)
            break
        print(f"HELD {held} MiB", flush=True)
    return fds


@dataclass(frozen=True)
class Attack:
    name = "attack-memfd"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            fds = hog()
            for fd in fds:
                os.close(fd)
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
