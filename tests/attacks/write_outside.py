"""Write outside the run: overwrite another leaderboard entry, the records, the repository, the sandbox's own code."""
import os
from dataclasses import dataclass

TARGETS = ["__RESULTS__/leaderboard/synthetic-tiny/sgd.json", "__RESULTS__/pwned.json", "__REPO__/README.md",
           "__REPO__/bench/runner.py", "/app/cryoopt_child/child.py", "/app/optimizers/sgd.py",
           "/usr/pwned", "/submission/pwned.py", "/proc/self/root__RESULTS__/pwned.json"]


def attempt():
    won = []
    for path in TARGETS:
        # Only a file (or folder) that already exists is the real one: the private /tmp would
        # happily take a new /tmp/pytest-.../results/pwned.json that nobody outside ever sees.
        if not os.path.isdir(os.path.dirname(path)):
            continue
        try:
            with open(path, "r+" if os.path.exists(path) else "x") as fh:
                fh.write('{"optimizer": "pwned"}')
            won.append(path)
        except OSError:
            pass
    with open("/tmp/scratch.bin", "wb") as fh:          # its private /tmp is writable (and discarded)
        fh.write(b"ok")
    print(("SUCCEEDED: " + "; ".join(won)) if won else "BLOCKED: nothing writable outside the private /tmp", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-write"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
