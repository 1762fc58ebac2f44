from . import bench_cmd, listing, run_cmd

COMMANDS = {"run": run_cmd, "bench": bench_cmd, "problems": listing.Problems, "optimizers": listing.Optimizers}
