"""Submit an optimizer (path/to/file.py:Class or a name) to the leaderboard of one problem."""
from __future__ import annotations

import json

from ._device import add_device_arg, apply_device


def add_args(p) -> None:
    add_device_arg(p)
    p.add_argument("optimizer", help="path/to/file.py:ClassName (run in the bubblewrap sandbox), or an installed name")
    p.add_argument("--problem", default="synthetic")
    p.add_argument("--scale", default="tiny", choices=["tiny", "small", "paper"])
    p.add_argument("--results", default="results")
    p.add_argument("--budget", help="full budget (default by scale: tiny 3epochs, small 5epochs)")
    p.add_argument("--tuning-budget", help="budget of each tuning trial (default 1epoch)")
    p.add_argument("--trials", type=int, help="tuning trials (default by scale)")
    p.add_argument("--seeds", type=int, help="seeds at full budget (default 3)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run (default 600)")


def main(args) -> int:
    """Score one submission; anything that goes wrong while handling it is one line,
    ``cryoopt submit: not scored: <reason>`` (escaped: the reason may quote the submission), exit status 2."""
    apply_device(args)
    from bench.score.leaderboard import rank, to_markdown
    from bench.score.text import plain
    from bench.isolation.sandbox import SandboxUnavailable
    from bench.isolation.submit import SecretSeedMissing, ensure_builtin_entries, run_protocol
    try:
        path = run_protocol(args.problem, args.scale, args.optimizer, results_dir=args.results,
                            budget=args.budget, tuning_budget=args.tuning_budget, trials=args.trials,
                            seeds=args.seeds, timeout=args.timeout)
    except (SandboxUnavailable, SecretSeedMissing, ValueError) as exc:
        print(f"cryoopt submit: not scored: {plain(exc, newlines=False)}")
        return 2
    except Exception as exc:        # a hostile submission must not end the harness with a traceback
        print(f"cryoopt submit: not scored: {type(exc).__name__}: {plain(exc, newlines=False)}")
        return 2
    ensure_builtin_entries(args.problem, args.scale, args.results)
    label = path.parent.name
    entry = json.loads(path.read_text())
    print(f"entry written: {path} (id {entry['entry_id']}, {entry['status']})\n")
    print(to_markdown(rank(args.results, label), label))
    return 0
