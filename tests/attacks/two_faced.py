"""Look cheap to tune: stop every non-default tuning trial after one batch (issue 22, guarantee 8).

Tuning cost is what the protocol allots to the trials, so stopping early
must not lower it; the scored runs use the setting fixed by the trials.
"""
from dataclasses import dataclass

from optimizers import Range


@dataclass(frozen=True)
class Attack:
    name = "attack-two-faced"
    lr: float = 1.0
    search_space = {"lr": Range(0.5, 2.0)}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        if self.lr != 1.0 and state >= 0:
            raise RuntimeError("stopping this trial early")
        return x - self.lr * g, state + 1
