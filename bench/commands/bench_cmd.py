"""Performance benchmarks; `cryoopt bench oracle --scale paper` times the oracle against sgemm."""
from __future__ import annotations

import json


def add_args(p) -> None:
    p.add_argument("what", choices=["oracle"])
    p.add_argument("--problem", default="synthetic")
    p.add_argument("--scale", default="paper", choices=["tiny", "small", "paper"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", help="also write the numbers to this JSON file")


def main(args) -> int:
    from problems import load_problem

    from ..perf import bench_oracle, format_report
    problem = load_problem(args.problem, scale=args.scale)
    report = bench_oracle(problem, batch_size=args.batch_size, repeats=args.repeats)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0
