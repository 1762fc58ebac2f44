"""A seccomp filter for the sandbox: no memfds and no kernel keyrings (issue 22).

bubblewrap loads a classic-BPF program given on a file descriptor
(``--seccomp FD``) just before it executes the sandboxed command.  The
program here answers ``EPERM`` to ``memfd_create`` and ``memfd_secret``
(memory that no address-space limit sees, and that outlives a mapping) and
to ``add_key`` / ``request_key`` / ``keyctl`` (kernel keyrings: per-uid state
that outlives a process), and allows everything else.  It is the fallback
the issue names where no per-run cgroup can be made (:mod:`.cgroup`), and it
is loaded everywhere: the optimizer never needs those calls (its only
shared memory is the memfd the harness creates and passes in).  On an
architecture other than x86-64 and arm64, or for an x32 system call on
x86-64, the process is killed rather than guessed about.

Layout of one instruction (``struct sock_filter``): ``u16 code, u8 jt, u8 jf,
u32 k``; the program reads ``seccomp_data.arch`` (offset 4) and ``.nr`` (offset 0).
"""
from __future__ import annotations

import errno
import platform
import struct

_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06          # BPF_LD|W|ABS, BPF_JMP|JEQ|K, ..|JGE|K, BPF_RET|K
ALLOW, KILL = 0x7FFF0000, 0x80000000                          # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
DENY = 0x00050000 | errno.EPERM                               # SECCOMP_RET_ERRNO | EPERM
#: machine -> (AUDIT_ARCH, {name: number}) for the refused calls
SYSCALLS = {
    "x86_64": (0xC000003E, {"memfd_create": 319, "memfd_secret": 447, "add_key": 248, "request_key": 249,
                            "keyctl": 250}),
    "aarch64": (0xC00000B7, {"memfd_create": 279, "memfd_secret": 447, "add_key": 217, "request_key": 218,
                             "keyctl": 219}),
}
X32_BIT = 0x40000000


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default: this one) as raw ``sock_filter`` records, or None if unknown."""
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        return None
    arch, calls = SYSCALLS[machine]
    ins = [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, KILL), (_LD_ABS, 0, 0, 0)]
    if machine == "x86_64":
        ins += [(_JGE, 0, 1, X32_BIT), (_RET, 0, 0, KILL)]
    numbers = sorted(set(calls.values()))
    for i, nr in enumerate(numbers):                     # jump to the DENY at the end when nr matches
        ins.append((_JEQ, len(numbers) - i, 0, nr))
    ins += [(_RET, 0, 0, ALLOW), (_RET, 0, 0, DENY)]
    return b"".join(struct.pack("<HBBI", *i) for i in ins)
