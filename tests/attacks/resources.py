"""Fork bomb (bounded by the process limit) and a memory hog (bounded by the address-space limit)."""
import os
import time
from dataclasses import dataclass

import numpy as np


def attempt():
    print(f"UID {os.getuid()}", flush=True)
    children = 0
    try:
        for _ in range(10_000):
            pid = os.fork()
            if pid == 0:
                time.sleep(120)
                os._exit(0)
            children += 1
    except OSError as exc:
        print(f"fork refused after {children} children ({type(exc).__name__})", flush=True)
    try:
        hog = np.ones(16 << 30, dtype=np.uint8)       # 16 GiB
        print(f"SUCCEEDED: allocated {hog.nbytes}", flush=True)
    except MemoryError:
        print("memory refused", flush=True)
    print(("BLOCKED: " if children < 10_000 else "SUCCEEDED: ") + f"{children} forks", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-resources"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
