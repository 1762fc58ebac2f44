"""``cryoopt bench oracle --isolated``: value_and_grad through the oracle server vs in-process.

Both oracles are built from the same problem; the calls alternate (server,
in-process, server, ...) on the same density and the same batches, so the
machine's load affects both alike, and the report is the ratio of medians.
The client here is :class:`~bench.isolation.client.OracleClient` in the
harness process: the same socket, wire format and server as a sandboxed
optimizer uses (the sandbox adds namespaces, not work per call); densities and gradients
go through the shared memory, as in a scored run.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .client import receive_start
from .harness import send_shared_buffers
from .wire import recv, send


def bench_isolated(problem_name: str, scale: str, batch_size: int = 100, repeats: int = 20, seed: int = 0) -> dict:
    """Median seconds per ``value_and_grad`` (batch ``batch_size``) both ways, and their ratio."""
    from problems import load_problem
    ctl, ctl_server = socket.socketpair()
    opt_server, opt = socket.socketpair()
    server = subprocess.Popen([sys.executable, "-m", "bench.isolation.server", str(ctl_server.fileno()),
                               str(opt_server.fileno())], pass_fds=(ctl_server.fileno(), opt_server.fileno()),
                              cwd=Path(__file__).resolve().parents[2])
    ctl_server.close()
    opt_server.close()
    try:
        send(ctl, {"problem": problem_name, "scale": scale, "data_seed": seed, "seed": 0, "extra": {},
                   "validation": None})
        problem = load_problem(problem_name, scale=scale, seed=seed, progress=False)
        local = problem.oracle()
        send(ctl, {"budget": None, "checkpoints": [], "shm": True, "timeout": 3600.0,   # deadlines on, as scored
                   "child": {"spec": "", "hyper": {}, "seed": 0}})
        send_shared_buffers(ctl, problem.shape)
        recv(ctl, 1 << 30)                                   # the server's initial checkpoint
        send(ctl, {"op": "ack"})
        _, x, remote = receive_start(opt)
        x = x.astype(np.float32)
        batches = [local.next_batch(batch_size) for _ in range(repeats + 1)]
        t_remote, t_local = [], []
        for i, idx in enumerate(batches):
            t0 = time.perf_counter()
            v_r, g_r = remote.value_and_grad(x, idx)
            t1 = time.perf_counter()
            v_l, g_l = local.value_and_grad(x, idx)
            t2 = time.perf_counter()
            if i:                                            # the first call of each warms caches
                t_remote.append(t1 - t0)
                t_local.append(t2 - t1)
            if not (np.isclose(v_r, v_l, rtol=1e-6) and np.allclose(g_r, g_l, rtol=1e-5, atol=1e-7)):
                raise RuntimeError("the oracle server and the in-process oracle disagree")
    finally:
        opt.close()                                          # the server reports the end, then exits
        try:
            recv(ctl, 1 << 30)
        except OSError:
            pass
        ctl.close()
        server.wait(timeout=60)
    remote_s, local_s = float(np.median(t_remote)), float(np.median(t_local))
    return {"problem": f"{problem_name}-{scale}", "batch_size": batch_size, "repeats": repeats,
            "shape": list(problem.shape), "isolated_s": remote_s, "in_process_s": local_s,
            "ratio": remote_s / local_s, "isolated_min_s": float(np.min(t_remote)),
            "in_process_min_s": float(np.min(t_local)), "ratio_min": float(np.min(t_remote) / np.min(t_local))}


def format_isolated(report: dict) -> str:
    return (f"value_and_grad, batch {report['batch_size']}, {report['problem']} (box {report['shape'][0]}), "
            f"median of {report['repeats']} alternating calls:\n"
            f"  in-process oracle     {report['in_process_s'] * 1e3:9.2f} ms\n"
            f"  through oracle server {report['isolated_s'] * 1e3:9.2f} ms\n"
            f"  ratio isolated / in-process: {report['ratio']:.3f} (target <= 1.10); "
            f"of the fastest calls: {report['ratio_min']:.3f} "
            f"({report['isolated_min_s'] * 1e3:.2f} / {report['in_process_min_s'] * 1e3:.2f} ms)")
