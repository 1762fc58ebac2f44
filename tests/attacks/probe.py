"""Tell a tuning run from a scored run by argv, environment, OptimizerInfo or the files around (to behave differently)."""
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-probe"
    search_space = {}

    def init(self, x0, info, rng):
        print(f"PROBE argv={sys.argv} env={sorted(os.environ)} info-fields={sorted(vars(info))} "
              f"cwd={os.getcwd()} tmp={sorted(os.listdir('/tmp'))} root={sorted(os.listdir('/'))}", flush=True)
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
