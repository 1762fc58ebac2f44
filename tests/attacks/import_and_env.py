"""Import the data layer and call load_problem; read secrets and paths from environment variables; use the network."""
import os
import socket
from dataclasses import dataclass


def attempt():
    won = []
    try:
        from problems import load_problem
        won.append(f"load_problem: {load_problem('synthetic', scale='tiny').n_train}")
    except Exception as exc:
        print(f"load_problem: {type(exc).__name__}", flush=True)
    try:
        import problems.data.cache as cache
        won.append(f"cache module {cache.cache_dir()}")
    except Exception as exc:
        print(f"problems.data.cache: {type(exc).__name__}", flush=True)
    try:
        import bench.run.runner  # noqa: F401
        won.append("imported bench.run.runner")
    except Exception as exc:
        print(f"bench: {type(exc).__name__}", flush=True)
    leaked = {k: v for k, v in os.environ.items() if k not in ("HOME", "PATH", "CRYOOPT_FD", "OMP_NUM_THREADS",
                                                               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                               "PYTHONDONTWRITEBYTECODE", "PWD", "LC_CTYPE")}
    if leaked:
        won.append(f"environment {leaked}")
    for host in ("1.1.1.1", "127.0.0.1", "::1"):
        try:
            socket.create_connection((host, 80), timeout=1).close()
            won.append(f"network {host}")
        except OSError as exc:
            print(f"network {host}: {type(exc).__name__}", flush=True)
    print(f"uid {os.getuid()} euid {os.geteuid()}", flush=True)
    print(("SUCCEEDED: " + "; ".join(won)) if won else "BLOCKED: no data layer, no secrets in the environment", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-import"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
