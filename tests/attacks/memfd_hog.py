"""Hold memory an address-space limit does not see (issue 22, guarantee 6).

1. 64 memfds of 64 MiB, filled with ``os.write`` (never mapped, so RLIMIT_AS
   does not count them) and kept open;
2. 8 processes of 256 MiB each (RLIMIT_AS is per process).

It prints what it holds after each memfd (``HELD``) and each process
(``PROCS HELD``).  Without a per-sandbox memory limit it held 4,096 MiB in
memfds and 2,048 MiB in processes.
"""
import os
import select
import time
from dataclasses import dataclass

CHUNK = b"\x01" * (1 << 20)


def memfds():
    held, fds = 0, []
    for i in range(64):
        try:
            fd = os.memfd_create(f"hog{i}")
            fds.append(fd)
            for _ in range(64):
                os.write(fd, CHUNK)
                held += 1
        except OSError as exc:
            print(f"BLOCKED: {type(exc).__name__} after {held} MiB", flush=True)
            break
        print(f"HELD {held} MiB", flush=True)
    for fd in fds:
        os.close(fd)


def processes():
    r, w = os.pipe()
    for _ in range(8):
        if os.fork() == 0:
            block = b"\x01" * (256 << 20)           # touched: resident
            os.write(w, b"+")
            time.sleep(60 + len(block) * 0)
            os._exit(0)
    # 8 forks touching 256 MiB each take well under a second unconfined; children the sandbox's memory
    # limit kills never write, so waiting longer than this only slows the test down
    held, deadline = 0, time.monotonic() + 6
    while held < 8 * 256 and time.monotonic() < deadline:
        if select.select([r], [], [], 1.0)[0]:
            held += 256 * len(os.read(r, 8))
            print(f"PROCS HELD {held} MiB", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-memfd"
    search_space = {}

    def init(self, x0, info, rng):
        print(f"UID {os.getuid()}", flush=True)
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            memfds()
            processes()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
