"""Forge results: print a fake summary and fake checkpoints, then stop without spending the budget."""
import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-forge"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        fake = {"status": "finished", "key": "x", "final_test_nll": -1e9, "meta_path": "/etc/passwd"}
        print(json.dumps({"op": "end", "status": "finished", "evals": 1e9}), flush=True)
        print(json.dumps(fake), flush=True)
        oracle.call("done")                  # claim to be done (the server knows the budget is not spent)
        os._exit(0)
