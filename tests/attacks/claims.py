"""End the run on the optimizer's own say-so (issue 22, guarantee 1): only the server's verdict may rank it.

``__MARKER__`` picks the claim: ``oversized-first`` (a first request larger
than the budget, refused, then "done": a finished run with nothing spent),
``fake-diverged`` (raise NonFiniteInput itself: an honest-looking diverged),
``nan-step`` (a genuinely non-finite density: the server's diverged).
"""
from dataclasses import dataclass

import numpy as np
from problems.protocol import BudgetExhausted, NonFiniteInput

MODE = "__MARKER__"


@dataclass(frozen=True)
class Attack:
    name = "attack-claims"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if MODE == "oversized-first" and state == 0:
            try:
                oracle.value_and_grad(x, oracle.next_batch(3 * oracle.n_train))
            except BudgetExhausted:
                print("CLAIM: refused, so the budget is spent", flush=True)
                raise
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        if MODE == "fake-diverged" and state == 0:
            print("CLAIM: diverged", flush=True)
            raise NonFiniteInput("the density became non-finite (it did not)")
        if MODE == "nan-step" and state == 0:
            return x * np.nan, state + 1
        return x - g, state + 1
