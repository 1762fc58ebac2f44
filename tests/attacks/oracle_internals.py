"""Reach the oracle's internals: reset the client's counter, raise its budget, walk the heap for images,
ask for the held-out images by index, send forged requests on the raw socket."""
import gc
from dataclasses import dataclass

import numpy as np


def attempt(x, oracle):
    won = []
    oracle._evals = 0.0
    oracle._budget = 1e12
    arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray) and o.ndim >= 2 and o.shape[0] > 100]
    if arrays:
        won.append(f"heap arrays {[a.shape for a in arrays[:3]]}")
    try:
        oracle.value(x, np.arange(oracle.n_train, oracle.n_train + 5))
        won.append("value on held-out indices")
    except Exception as exc:
        print(f"held-out indices: {type(exc).__name__}", flush=True)
    for op, fields in (("set_budget", {"budget": 1e12}), ("reset", {}), ("value", {"evals": 0})):
        try:
            oracle.call(op, **fields)
            won.append(f"forged {op}")
        except Exception as exc:
            print(f"forged {op}: {type(exc).__name__}", flush=True)
            return won
    return won


@dataclass(frozen=True)
class Attack:
    name = "attack-internals"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            won = attempt(x, oracle)
            print(("SUCCEEDED: " + "; ".join(won)) if won else "BLOCKED: attempted", flush=True)
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
