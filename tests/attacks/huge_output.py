"""Flood stdout and stderr (tens of MB) to exhaust the harness's memory or disk."""
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-output"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            line = "A" * 1023 + "\n"
            for _ in range(4_000):               # 4 MB on each stream (60 times the cap)
                sys.stdout.write(line)
                sys.stderr.write(line)
            sys.stdout.flush()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
