"""value_and_grad of this tree against another revision's, alternating in one run (``--against REV``).

The other revision is checked out into a temporary ``git worktree`` and runs
in a child process (its own ``problems`` package, the same data cache, the
same problem, density and batches); parent and child take turns timing
``steps`` calls each, ``rounds`` times, so a load that comes and goes on the
shared machine falls on both alike.  Reported: each side's median step,
their ratio (median of the per-round ratios), and both against the same
run's sgemm rate at the step's GEMM work (:func:`bench.experiments.perf.gemm_gflops`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs inside the other revision: only the long-standing public API (load_problem, oracle, next_batch,
# value_and_grad, initial_density), so that old revisions answer too.
CHILD = r"""
import json, sys, time
from problems import load_problem
problem, scale, batch, n_batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = load_problem(problem, scale=scale, seed=0, progress=False)
o = p.oracle()
x = p.initial_density(0)
batches = [o.next_batch(batch) for _ in range(n_batches)]
o.value_and_grad(x, batches[0])
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for i in range(int(line)):
        t = time.perf_counter()
        o.value_and_grad(x, batches[i % n_batches])
        times.append(time.perf_counter() - t)
    print(json.dumps(times), flush=True)
"""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _time_steps(oracle, x, batches, n: int) -> list[float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        oracle.value_and_grad(x, batches[i % len(batches)])
        times.append(time.perf_counter() - t)
    return times


def compare_with_revision(rev: str, problem: str = "synthetic", scale: str = "paper", batch_size: int = 100,
                          steps: int = 5, rounds: int = 8) -> dict:
    """Alternate ``rounds`` x ``steps`` value_and_grad calls between this tree and revision ``rev``."""
    from problems import load_problem

    from .perf import gemm_gflops
    root = repo_root()
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", rev + "^{commit}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    p = load_problem(problem, scale=scale, seed=0, progress=False)
    oracle, x = p.oracle(), p.initial_density(0)
    batches = [oracle.next_batch(batch_size) for _ in range(steps)]
    oracle.value_and_grad(x, batches[0])
    flops = p.likelihood().gemm_flops(batch_size)
    with tempfile.TemporaryDirectory(prefix="cryoopt-against-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, problem, scale, str(batch_size), str(steps)],
                                 cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"revision {rev} ({sha[:10]}) did not start (see its error above)")
            ours, theirs, gemm = [], [], []
            for _ in range(rounds):
                ours.append(_time_steps(oracle, x, batches, steps))
                child.stdin.write(f"{steps}\n")
                child.stdin.flush()
                theirs.append(json.loads(child.stdout.readline()))
                gemm.append(gemm_gflops(repeats=2))
        finally:
            child.kill()
            child.wait()
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    new, old = float(np.median(ours)), float(np.median(theirs))
    sgemm = float(np.median(gemm))
    return {"problem": f"{problem}-{scale}", "revision": rev, "commit": sha, "batch_size": batch_size,
            "steps": steps, "rounds": rounds, "ms_this": 1e3 * new, "ms_revision": 1e3 * old,
            "ratio_this_over_revision": float(np.median(np.median(ours, axis=1) / np.median(theirs, axis=1))),
            "gemm_gflop_per_step": flops / 1e9, "sgemm_gflops": sgemm,
            "this_over_sgemm": flops / new / 1e9 / sgemm, "revision_over_sgemm": flops / old / 1e9 / sgemm}


def format_comparison(r: dict) -> str:
    return "\n".join([
        f"value_and_grad, this tree vs {r['revision']} ({r['commit'][:10]}): {r['problem']}, batch {r['batch_size']}, "
        f"{r['rounds']} alternating rounds of {r['steps']} steps",
        f"  this tree        {r['ms_this']:8.1f} ms/step   GEMM-work rate / sgemm {r['this_over_sgemm']:.2f}",
        f"  {r['revision'][:15]:<15}  {r['ms_revision']:8.1f} ms/step   GEMM-work rate / sgemm "
        f"{r['revision_over_sgemm']:.2f}",
        f"  ratio this / revision  {r['ratio_this_over_revision']:.3f}  (median of per-round ratios)",
        f"  sgemm (2048^2, same run) {r['sgemm_gflops']:.1f} GFLOP/s; GEMM work {r['gemm_gflop_per_step']:.2f} GFLOP/step",
    ])
