"""Spend more than the budget: catch BudgetExhausted and keep calling, reset the client's counter each step."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Attack:
    name = "attack-budget"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        refused = 0
        for _ in range(10):
            oracle._evals = 0.0
            try:
                _, g = oracle.value_and_grad(x, oracle.next_batch(100))
                x = x - g
            except Exception:
                refused += 1
        if refused:
            print(f"BLOCKED: {refused} calls refused", flush=True)
            raise RuntimeError("budget spent")       # ends like BudgetExhausted would not: the run is an error
        return x, state + 1
