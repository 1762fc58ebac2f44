"""Submitting an optimizer: describe it in the sandbox, tune, score on the secret instance, add an entry.

The protocol (:mod:`bench.run.tuning`) is the same for every optimizer: trials
on the validation split of the *published* instance (documented seed
:data:`PUBLIC_SEED`), then the chosen setting with several seeds on the
*scored* instance, whose seed is derived from a key of at least 128 random
bits that is not in the repository (:func:`secret_seed`).  Submitted code
runs only in the sandbox of :mod:`bench.isolation` (never imported here);
built-in optimizers (trusted) run through the ordinary sweep executor on the
same instances.  The entry is keyed by a harness-assigned id; only its
owner, the harness, writes it; no two entries of a board show the same
name (compared without case, installed optimizers' names reserved).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

from optimizers import BUILTIN, available
from problems import problem_label

from bench.score.entry import LeaderboardEntry
from bench.score.leaderboard import entry_path, run_ranked, write_entry
from bench.score.text import plain
from bench.run.sweep import _problem, run_specs
from bench.run.tuning import describe_class, pick_best, protocol_specs, sample_hyperparameters, seed_specs

SCALE_DEFAULTS = {  # (budget, tuning budget, trials, seeds)
    "tiny": ("3epochs", "1epoch", 4, 3),
    "small": ("5epochs", "1epoch", 6, 3),
    "paper": ("10epochs", "1epoch", 8, 3),
}
PUBLIC_SEED = 0
"""Seed of the published instances (development, tuning)."""
SECRET_KEY_FILE = Path("~/.config/cryoopt/secret_key")
MIN_KEY_HEX = 32                       # 128 bits


class SecretSeedMissing(RuntimeError):
    """No usable scoring key is configured (see :func:`secret_seed`)."""


def secret_key() -> bytes:
    """The maintainers' key: ``$CRYOOPT_SECRET_KEY``, else the file ``$CRYOOPT_SECRET_KEY_FILE``
    (default ``~/.config/cryoopt/secret_key``): at least 32 hex digits (128 bits) of a random draw.

    Draw it once with ``python -c "import secrets; print(secrets.token_hex(16))"``.  Entropy is
    enforced as far as text allows: at least 32 hex digits, at least 10 distinct, no digit more than
    a quarter of them (a small integer, a date or ``0000...`` is refused).
    """
    text, source = os.environ.get("CRYOOPT_SECRET_KEY"), "CRYOOPT_SECRET_KEY"
    if text is None:
        path = Path(os.environ.get("CRYOOPT_SECRET_KEY_FILE", SECRET_KEY_FILE)).expanduser()
        if not path.is_file():
            old = " (CRYOOPT_SECRET_SEED, an integer seed, is no longer accepted)" \
                if "CRYOOPT_SECRET_SEED" in os.environ else ""
            raise SecretSeedMissing("leaderboard scores need the secret instance key: set CRYOOPT_SECRET_KEY or "
                                    f"write it to {path}{old}; draw one with python -c \"import secrets; "
                                    "print(secrets.token_hex(16))\" (README, 'Leaderboard')")
        text, source = path.read_text(), str(path)
    key = text.strip().lower()
    if len(key) < MIN_KEY_HEX or any(c not in "0123456789abcdef" for c in key) or len(set(key)) < 10 \
            or max(key.count(c) for c in set(key)) > len(key) / 4:
        raise SecretSeedMissing(f"{source}: expected a random key of at least {MIN_KEY_HEX} hex digits "
                                "(128 bits; e.g. secrets.token_hex(16)), not a small integer or a pattern")
    return bytes.fromhex(key if len(key) % 2 == 0 else key + "0")


def secret_seed() -> int:
    """The data seed of the scored instances, derived from :func:`secret_key`: 128 bits of
    ``SHA-256("cryoopt scored instance" || key)`` with the top bit set (so it is at least
    :data:`bench.run.runner.SECRET_SEEDS_FROM`: no density of the instance is ever written to the results).

    The seed drives every random part of the instance -- phantom, poses, CTFs, noise,
    the test/scoring split -- and the oracle's batch order.
    """
    digest = hashlib.sha256(b"cryoopt scored instance\0" + secret_key()).digest()
    return int.from_bytes(digest[:16], "big") | (1 << 127)


def _name_taken(results_dir: str, problem: str, scale: str, name: str) -> str | None:
    """The id of an entry (or installed optimizer) already showing ``name`` (compared without case), if any."""
    folded = name.casefold()
    if any(n.casefold() == folded for n in available()):
        return "an installed optimizer"
    for path in (Path(results_dir) / "leaderboard").glob(f"{problem}-{scale}/*.json"):
        try:
            if str(json.loads(path.read_text()).get("optimizer", "")).casefold() == folded:
                return f"entry {path.stem}"
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _as_dict(spec) -> dict:
    return dict(spec) if isinstance(spec, dict) else spec.to_dict()


def _with(spec, **changes):
    """A run spec (plain dict or :class:`bench.run.spec.RunSpec`) with some fields changed."""
    return {**spec, **changes} if isinstance(spec, dict) else replace(spec, **changes)


def _isolated(specs: list[dict], info: dict, results_dir: str, timeout: float) -> list[dict]:
    from .harness import run_isolated
    return [run_isolated(s, info, results_dir=results_dir, timeout=timeout) for s in specs]


def run_protocol(problem: str, scale: str, optimizer_spec: str, *, results_dir: str = "results",
                 budget: str | None = None, tuning_budget: str | None = None, trials: int | None = None,
                 seeds: int | None = None, n_validation: int = 50, isolated: bool = True,
                 timeout: float = 600.0, n_jobs: int = 2, submitted: bool = True,
                 scoring_seed: int | None = None) -> Path:
    """Tune, run seeds on the scored instance, and write the entry; returns the entry's path.

    ``isolated=False`` (trusted code only) runs in-process; a file submission is always isolated.
    ``scoring_seed`` defaults to :func:`secret_seed`.
    """
    d_budget, d_tuning, d_trials, d_seeds = SCALE_DEFAULTS[scale]
    budget, tuning_budget = budget or d_budget, tuning_budget or d_tuning
    trials, seeds = trials or d_trials, seeds or d_seeds
    scoring_seed = secret_seed() if scoring_seed is None else int(scoring_seed)
    results_dir = str(results_dir)
    started = time.perf_counter()
    sandboxed = ".py:" in optimizer_spec           # a file: untrusted, never imported here
    if sandboxed:
        from .harness import describe, require_sandbox
        from problems.data.cache import cache_dir
        require_sandbox()
        protected = [cache_dir(), Path(results_dir)]
        info = describe(optimizer_spec, protected=protected)
        taken = _name_taken(results_dir, problem, scale, info["name"])
        if taken is not None:          # no two entries show one name; an installed one's name is reserved
            raise ValueError(f"optimizer name {info['name']!r} is reserved: {taken} shows it; rename the class")
        entry_id = f"sub-{uuid.uuid4().hex[:12]}"
        base = {"problem": problem, "scale": scale, "optimizer": optimizer_spec, "record_name": entry_id}
        trial_specs = [{**base, "data_seed": PUBLIC_SEED, "hyper": h, "seed": 0, "budget": tuning_budget,
                        "validation": n_validation, "compare_truth": False}
                       for h in sample_hyperparameters(info, trials, seed=0)]
        execute = lambda specs: _isolated(specs, info, results_dir, timeout)  # noqa: E731
    else:
        info = describe_class(optimizer_spec)
        entry_id = info["name"]
        trial_specs = protocol_specs(problem, scale, optimizer_spec, n_trials=trials, tuning_budget=tuning_budget,
                                     n_validation=n_validation, results_dir=results_dir)
        execute = lambda specs: run_specs(specs, n_jobs=n_jobs, progress=False)  # noqa: E731
    trial_results = execute(trial_specs)
    usable = [r for r in trial_results if r.get("meta_path")]
    if not any(r["status"] == "finished" for r in trial_results):
        first = trial_results[0]
        detail = first.get("message") or first["status"]
        raise ValueError(f"{optimizer_spec}: every tuning run failed ({first['status']}: {plain(detail, 500)})")
    best, tuning_cost = pick_best(usable)
    final_specs = [_with(s, data_seed=scoring_seed)
                   for s in seed_specs(problem, scale, optimizer_spec, best, budget=budget, n_seeds=seeds,
                                       results_dir=results_dir)]
    if sandboxed:
        final_specs = [{**_as_dict(s), "record_name": entry_id} for s in final_specs]
    runs = execute(final_specs)
    prob = _problem(problem, scale, scoring_seed, ())
    label = problem_label(prob)
    entry = {"entry_id": entry_id, "optimizer": info["name"], "optimizer_spec": optimizer_spec,
             "submitted": bool(submitted or sandboxed), "problem": label,
             "problem_hash": prob.metadata["content_hash"], "budget": budget, "tuning_budget": tuning_budget,
             "trials": trials, "hyperparameters": best, "tuning_cost": tuning_cost,
             "reference_test_nll": None if prob.ground_truth is None else prob.test_nll(prob.ground_truth),
             "runs": [{"seed": r["spec"]["seed"], "status": r["status"],
                       "final_test_nll": r["final_test_nll"] if r["status"] in ("finished", "diverged") else None,
                       "record": None if not r.get("meta_path") else os.path.relpath(r["meta_path"], results_dir)}
                      for r in runs],
             "seconds": time.perf_counter() - started}
    entry["status"] = "ranked" if run_ranked(entry) else "unranked"
    path = entry_path(Path(results_dir), label, entry_id)
    if sandboxed and _name_taken(results_dir, problem, scale, info["name"]) is not None:
        raise ValueError(f"optimizer name {info['name']!r} was taken while this submission ran; rename the class")
    write_entry(path, LeaderboardEntry.from_json(entry, path))
    return path


def ensure_builtin_entries(problem: str, scale: str, results_dir: str = "results", progress: bool = True,
                           n_jobs: int = 2, scoring_seed: int | None = None) -> list[Path]:
    """Run the protocol for every built-in optimizer lacking an entry on this problem's scored instance."""
    from tqdm.auto import tqdm
    scoring_seed = secret_seed() if scoring_seed is None else int(scoring_seed)
    prob = _problem(problem, scale, scoring_seed, ())
    label = problem_label(prob)

    def current(name: str) -> bool:
        path = entry_path(Path(results_dir), label, name)
        try:
            return json.loads(path.read_text()).get("problem_hash") == prob.metadata["content_hash"]
        except (OSError, ValueError, AttributeError):
            return False

    # Optimizers with optional dependencies (`requires`) are left out: the built-in board is the same everywhere.
    missing = [n for n, cls in BUILTIN.items() if not getattr(cls, "requires", ()) and not current(n)]
    made = []
    for name in tqdm(missing, desc=f"built-in entries for {label}", disable=not progress or not missing):
        made.append(run_protocol(problem, scale, name, results_dir=results_dir, isolated=False,
                                 n_jobs=n_jobs, submitted=False, scoring_seed=scoring_seed))
    return made

