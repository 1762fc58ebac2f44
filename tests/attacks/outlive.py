"""Keep running after the run ends: a thread that keeps calling the oracle, a double-forked daemon in its own session."""
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


def spend(oracle, x):
    while True:
        try:
            oracle.value(x, oracle.next_batch(10))
        except Exception:
            time.sleep(0.01)


def attempt(x, oracle):
    threading.Thread(target=spend, args=(oracle, x.copy()), daemon=False).start()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # __MARKER__"],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.fork() == 0:                       # classic daemon: fork, setsid, fork
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)  # __MARKER__"])
        os._exit(0)
    print("BLOCKED?: daemons started", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-outlive"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt(x, oracle)
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
