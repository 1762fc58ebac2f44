"""Per-uid kernel state shared between runs, and the sandbox's own command line (issue 22, guarantee 6).

Leaves a key in the user keyring (a channel from a tuning run to a scored
run, or from one submission to another) and looks for the key an earlier
run left; prints its uid; reads ``/proc/1/cmdline`` (bwrap's arguments name
host paths: the staging folder, the submission's real path).
"""
import ctypes
import os
import platform
from dataclasses import dataclass

NAME = b"cryoopt-attack-__MARKER__"


def attempt():
    print(f"UID {os.getuid()}", flush=True)
    cmdline = open("/proc/1/cmdline", "rb").read()
    if b"--ro-bind" in cmdline or b"cryoopt-run-" in cmdline:
        print("SUCCEEDED: bwrap's arguments are readable", flush=True)
    if platform.machine() != "x86_64":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    found = libc.syscall(250, 10, ctypes.c_long(-4), b"user", NAME, 0)       # keyctl(SEARCH, @u, ...)
    if found > 0:
        print("SUCCEEDED: found the key an earlier run left", flush=True)
    key = libc.syscall(248, b"user", NAME, b"left by a run", 13, ctypes.c_long(-4))   # add_key(..., @u)
    if key > 0:
        libc.syscall(250, 15, ctypes.c_long(key), 120)                       # keyctl(SET_TIMEOUT): tidy up
    print(f"KEY {'added' if key > 0 else 'refused'}", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-kernel"
    search_space = {}

    def init(self, x0, info, rng):
        attempt()
        return 0

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
