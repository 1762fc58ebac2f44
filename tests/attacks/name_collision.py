"""Take a built-in's name, hoping to overwrite or impersonate its leaderboard entry."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "sgd"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - 100 * g, state + 1
