"""The trusted side of an isolated run: start the oracle server and the sandbox, evaluate, write the record.

The harness never imports the submitted module.  :func:`describe` asks a
sandboxed child for the class's name, defaults and search space and checks
the plain data it gets back; :func:`run_isolated` runs one (hyperparameters,
seed, budget) on one problem: the oracle server (:mod:`.server`) answers
the sandboxed optimizer, forwards its density when the counter crosses the
harness's checkpoint schedule, and reports the facts it owns at the end.
The harness computes test NLL and FSC from those densities and is the only
writer of records.  What the optimizer prints is kept (capped) as a log
for the human reader, never parsed.
"""
from __future__ import annotations

import fcntl
import functools
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from problems.data.io import write_mrc

from bench.score.curvature import estimate_curvature
from bench.score.metrics import compare_to_truth
from bench.score.reference import full_objective, run_scores
from bench.run.records import (budget_verdict, environment, instance_name, plugin_source_hash, record_paths, run_key,
                               write_record)
from bench.run.runner import SNAPSHOT_EVALS, checkpoint_schedule, parse_budget, publishes_densities
from bench.score.text import plain
from .describe import check_description, describe, not_from_protected, protected_paths, require_sandbox, split_spec
from .record import IsolatedRunMeta
from .sandbox import Limits, Sandboxed, SandboxUnavailable, check_not_exposed, command, python_roots, stage
from .server import CHEAPEST
from .server import serve as server_serve
from .wire import PeerClosed, ProtocolViolation, recv, send

__all__ = ["SandboxUnavailable", "check_description", "describe", "require_sandbox", "run_isolated",
           "send_shared_buffers"]

@functools.lru_cache(maxsize=1)
def _server_context():
    """Oracle servers are forked from a fresh forkserver process with the data layer pre-imported.

    The forkserver is a new interpreter (it holds no data and none of the
    harness's state); each server it forks loads only its own problem.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["problems", "problems.oracle", "bench.isolation.server"])
    return ctx


def send_shared_buffers(sock: socket.socket, shape) -> None:
    """Create the memfd of three densities (x, v, out) for the server and the optimizer; the harness never maps it.

    Sealed against resizing before it is shared: an optimizer that could shrink
    it would make the server's next access to the mapping a SIGBUS.
    """
    fd = os.memfd_create("cryoopt-oracle", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, 3 * 4 * int(np.prod(shape)))
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        socket.send_fds(sock, [b"s"], [fd])
    finally:
        os.close(fd)


class _Evaluator:
    """Test NLL at checkpoints, snapshots and FSC: the harness's half of the run record."""

    def __init__(self, problem, compare_truth: bool, meta_path: Path, key: str, budget: float):
        self.problem, self.compare, self.meta_path, self.key = problem, compare_truth, meta_path, key
        self.publish = publishes_densities(problem)      # no density of a secret instance is written
        self.rows, self.snapshots, self.fsc = [], {}, {}
        self.train_objectives: dict[str, float] = {}
        self.pending = [s for s in SNAPSHOT_EVALS if s < budget]

    def checkpoint(self, h: dict, x: np.ndarray) -> None:
        finite = bool(np.isfinite(x).all())
        self.rows.append({"evals": float(h["evals"]), "wall_time": float(h["wall_time"]),
                          "train_objective": h.get("train_objective"),
                          "test_nll": self.problem.test_nll(x) if finite else np.nan})
        while self.pending and h["evals"] >= self.pending[0]:
            self.snapshot(x, f"{int(self.pending.pop(0))}", h["evals"])

    def snapshot(self, x: np.ndarray, tag: str, evals: float) -> None:
        pixel = self.problem.metadata.get("pixel_size_angstrom", 1.0)
        if self.publish:
            path = self.meta_path.with_name(f"{self.key}.{tag}.mrc")
            write_mrc(path, x, pixel)
            self.snapshots[tag] = path.name
        self.train_objectives[tag] = full_objective(self.problem, x)     # harness-only, uncharged
        if self.compare and self.problem.ground_truth is not None:
            cmp = compare_to_truth(x, self.problem.ground_truth, pixel, self.problem.band.r_max,
                                   device=getattr(self.problem, "device", None))
            self.fsc[tag] = {k: v for k, v in cmp.items() if k != "aligned"} | {"evals": evals}


def _load(spec: dict):
    from bench.run.spec import cached_problem          # tuning trials and seeds reuse one problem
    problem = cached_problem(spec["problem"], spec["scale"], spec["data_seed"],
                             tuple(sorted(spec.get("extra", {}).items())))
    if spec.get("validation"):
        problem = problem.validation_split(spec["validation"], seed=spec["data_seed"])
    return problem


def run_isolated(spec: dict, info: dict, *, results_dir: str | Path, timeout: float = 600.0,
                 limits: Limits = Limits(), protected=()) -> dict:
    """One isolated run; returns ``{"spec", "status", "final_test_nll", "meta_path", "evals"}``.

    ``spec`` holds ``problem, scale, data_seed, optimizer (file.py:Class), hyper, seed, budget,
    record_name`` and optionally ``validation, extra, compare_truth``; ``info`` is :func:`describe`'s.
    Statuses (the oracle server's verdict, :mod:`.server`): ``finished`` (the server refused a call
    with the budget spent, ledger consistent), ``diverged`` (it saw a non-finite density), ``error``,
    ``timeout`` (``timeout`` seconds of the optimizer's wall clock; the server and the harness both
    enforce it, the whole process tree and cgroup are killed).
    """
    require_sandbox()
    file, cls = split_spec(spec["optimizer"])
    protected = protected_paths([*protected, results_dir])
    not_from_protected(file, protected)
    unknown = set(spec.get("hyper", {})) - set(info["defaults"])
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}")
    full_hyper = {**info["defaults"], **spec.get("hyper", {})}
    ctl, ctl_server = socket.socketpair()
    opt_server, opt_child = socket.socketpair()
    server = _server_context().Process(target=server_serve, args=(ctl_server, opt_server), daemon=True)
    server.start()
    ctl_server.close()
    opt_server.close()
    # The server loads its half of the problem while the harness loads its own.
    from problems.data.cache import cache_dir
    from problems.model.devices import default_device
    send(ctl, {k: spec[k] for k in ("problem", "scale", "data_seed", "seed")} | {
        "extra": spec.get("extra", {}), "validation": spec.get("validation"), "cache": str(cache_dir()),
        "device": default_device()})        # the server owns the device; the optimizer sees numpy arrays
    problem = _load(spec)
    budget = parse_budget(spec["budget"], problem.n_train)
    label = f"{problem.name}-{problem.metadata.get('scale', 'custom')}"
    source = plugin_source_hash(spec["optimizer"])       # an edited submission file is a new run
    key = run_key(problem.metadata["content_hash"], info["name"], full_hyper, spec["seed"], budget, source)
    parquet, meta_path = record_paths(Path(results_dir), label, spec["record_name"], key)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    ev = _Evaluator(problem, spec.get("compare_truth", True), meta_path, key, budget)
    schedule = sorted(set(checkpoint_schedule(budget).tolist()) | {float(s) for s in ev.pending})
    status, message, end, x = "error", "", {}, None
    with tempfile.TemporaryDirectory(prefix="cryoopt-run-") as tmp:
        staging = stage(Path(tmp) / "app")
        check_not_exposed(["/usr", "/lib", "/bin", *python_roots(), str(staging), str(file)], list(protected))
        child = Sandboxed(command(staging, file, limits, opt_child.fileno()), opt_child.fileno(), limits)
        opt_child.close()
        started = time.monotonic() + 300          # loading time is not the optimizer's: the clock
        timed_out = False                          # starts at the server's first report (below)
        try:
            # the curvature scale of OptimizerInfo, measured as the in-process runner does (bench.score.curvature)
            curvature = estimate_curvature(problem, problem.initial_density(spec["seed"]))
            send(ctl, {"budget": budget, "checkpoints": schedule, "shm": True, "timeout": timeout, "child": {
                "spec": f"/submission/{file.name}:{cls}", "hyper": spec.get("hyper", {}), "seed": spec["seed"],
                "curvature": curvature}})
            send_shared_buffers(ctl, problem.shape)
            while True:
                left = timeout - (time.monotonic() - started)
                if left <= 0 and not timed_out:
                    timed_out = True
                    child.kill()                  # the server sees the connection close and reports
                ctl.settimeout(max(left, 0) if not timed_out else 120)
                try:
                    h, arrays = recv(ctl, 64 * int(np.prod(problem.shape)) * 4)
                except socket.timeout:
                    if timed_out:
                        raise RuntimeError("the oracle server did not report") from None
                    continue
                if h.get("op") == "checkpoint":
                    if not ev.rows:
                        started = time.monotonic()
                    ev.checkpoint(h, arrays[0])
                    send(ctl, {"op": "ack"})
                elif h.get("op") == "end":
                    end, x = h, arrays[0]
                    status, message = ("timeout", f"killed after {timeout:g} s") if timed_out else (
                        h["status"], h["message"])
                    break
        except (PeerClosed, ProtocolViolation, RuntimeError, OSError) as exc:
            status, message = ("timeout", f"killed after {timeout:g} s") if timed_out else (
                "error", f"oracle server failed: {exc}")
        finally:
            child.kill()
            ctl.close()
            server.join(timeout=0.5)              # it has reported everything; do not wait for its teardown
            if server.is_alive():
                server.kill()
                server.join()
    evals = float(end.get("evals", 0.0))
    if status == "finished" and (end.get("budget") != budget or evals > budget + 1e-9 or not end.get("exhausted")
                                 or budget - evals >= CHEAPEST):
        status, message = "error", "inconsistent ledger"
    status, message, budget_use = budget_verdict(status, message, int(end.get("steps", 0)), evals, budget,
                                                 float(end.get("max_step_cost", 0.0)))
    if x is not None:
        if not ev.rows or ev.rows[-1]["evals"] != evals:
            ev.checkpoint({"evals": evals, "wall_time": end.get("wall_time", 0.0),
                           "train_objective": end.get("train_objective")}, x)
        if np.isfinite(x).all():
            ev.snapshot(x, "final", evals)
    final = ev.rows[-1]["test_nll"] if ev.rows else np.nan
    scores = {} if x is None else run_scores(problem, results_dir, x, final, ev.train_objectives,
                                             f"{info['name']}/{key}")
    reference = None if problem.ground_truth is None else problem.test_nll(problem.ground_truth)
    meta = IsolatedRunMeta(
        run_key=key, problem=problem.name, problem_label=label, problem_version=problem.metadata["version"],
        problem_hash=problem.metadata["content_hash"], optimizer=info["name"], optimizer_spec=spec["optimizer"],
        record_name=spec["record_name"], hyperparameters=full_hyper, seed=spec["seed"], budget=budget, evals=evals,
        status=status, message=plain(message), isolated=True,
        final_test_nll=None if not np.isfinite(final) else float(final), reference_test_nll=reference,
        pixel_size_angstrom=problem.metadata.get("pixel_size_angstrom"), band_radius=problem.band.r_max,
        n_train=problem.n_train, optimizer_seconds=float(end.get("wall_time", 0.0)), snapshots=ev.snapshots,
        fsc=ev.fsc, calls=end.get("calls", {}), ledger=end.get("ledger"),
        shared_memory_calls=end.get("shared_memory_calls", 0),
        extra={"instance": instance_name(problem.metadata), **environment(), **scores, **budget_use,
               **({"source_hash": source} if source else {})})
    meta_path.with_suffix(".log").write_text(plain(child.text(), 1 << 20))   # a log for humans, escaped
    rows = ev.rows or [{"evals": 0.0, "wall_time": 0.0, "train_objective": None, "test_nll": np.nan}]
    for row in rows:
        row.update(run_key=key, optimizer=info["name"], seed=spec["seed"], problem=label)
    write_record(parquet, meta_path, rows, meta)
    return {"spec": spec, "status": status, "final_test_nll": meta.final_test_nll, "meta_path": str(meta_path),
            "evals": evals, "message": meta.message}
