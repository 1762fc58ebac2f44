"""Never return from a step (and ignore SIGTERM): the time-out must end it."""
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-sleeper"
    search_space = {}

    def init(self, x0, info, rng):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return 0

    def step(self, x, state, oracle, rng):
        oracle.value(x, oracle.next_batch(10))
        while True:
            time.sleep(1)
