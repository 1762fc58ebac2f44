from . import bench_cmd, leaderboard_cmd, listing, run_cmd, submit_cmd, sweep_cmd

COMMANDS = {"run": run_cmd, "sweep": sweep_cmd, "submit": submit_cmd, "leaderboard": leaderboard_cmd, "bench": bench_cmd, "problems": listing.Problems, "optimizers": listing.Optimizers}
