"""Reach the harness or the oracle server through /proc: parent memory, other processes' fds, environ, cwd."""
import os
from dataclasses import dataclass


def attempt():
    won, seen = [], []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        seen.append(pid)
        for what in ("environ", "cmdline"):
            try:
                data = open(f"/proc/{pid}/{what}", "rb").read()
                if b"cryoopt" in data.lower() and b"cryoopt_child" not in data and b"CRYOOPT_FD" not in data:
                    won.append(f"/proc/{pid}/{what}")
            except OSError:
                pass
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                # /memfd:cryoopt-oracle is the shared x/v/gradient buffer: the optimizer's own densities
                if target.startswith("/") and not target.startswith(("/dev", "/proc", "/app", "/submission",
                                                                     "/memfd:cryoopt-oracle")):
                    won.append(f"fd {pid}/{fd} -> {target}")
        except OSError:
            pass
    try:
        with open(f"/proc/{os.getppid()}/mem", "rb") as fh:
            fh.seek(0x400000)
            won.append(f"parent mem {fh.read(8)!r}")
    except (OSError, ValueError, OverflowError):
        pass
    try:
        won.append(f"parent cwd {os.readlink(f'/proc/{os.getppid()}/cwd')}") if os.getppid() > 1 else None
    except OSError:
        pass
    print(f"pids visible: {len(seen)}", flush=True)
    print(("SUCCEEDED: " + "; ".join(won)) if won else "BLOCKED: nothing outside the sandbox through /proc", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-proc"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
