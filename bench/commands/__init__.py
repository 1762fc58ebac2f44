"""The ``cryoopt`` subcommands: argument parsing and printing only, no science (top room: may import every other)."""
from . import bench_cmd, compare_cmd, condition_cmd, doctor_cmd, leaderboard_cmd, listing, reference_cmd, report_cmd, reproduce_cmd, run_cmd, submit_cmd, sweep_cmd

COMMANDS = {"run": run_cmd, "sweep": sweep_cmd, "submit": submit_cmd, "leaderboard": leaderboard_cmd,
            "report": report_cmd, "reference": reference_cmd, "reproduce": reproduce_cmd, "bench": bench_cmd, "condition": condition_cmd, "problems": listing.Problems, "optimizers": listing.Optimizers,
            "doctor": doctor_cmd, "compare": compare_cmd}
