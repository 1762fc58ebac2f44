"""Compare two leaderboard entries on one problem: paired difference per image, 95% interval, p-values, plot.

Example: cryoopt compare sgd sub-1a2b3c --problem synthetic-small
"""
from __future__ import annotations

import json


def add_args(p) -> None:
    p.add_argument("a", help="entry id (or optimizer name, when it has one entry)")
    p.add_argument("b", help="entry id (or optimizer name, when it has one entry)")
    p.add_argument("--problem", default="synthetic-small", help="problem label")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="out/compare", help="where the plot is written")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")


def main(args) -> int:
    from bench.report.compare import compare
    result, files = compare(args.results, args.problem, args.a, args.b, args.out)
    if args.json:
        print(json.dumps({**result, "plot": [str(f) for f in files]}, default=float))
        return 0
    resolved = result["ci_low"] > 0 or result["ci_high"] < 0          # the interval excludes no difference
    verdict = (f"{result['a'] if result['delta'] < 0 else result['b']} is better" if resolved
               else "the difference is not resolved")
    print(f"{result['problem']}: NLL({result['a']}) - NLL({result['b']}) = {result['delta']:+.4f} "
          f"[{result['ci_low']:+.4f}, {result['ci_high']:+.4f}] (95%), p = {result['p_value']:.3g}, "
          f"Wilcoxon p = {result['p_wilcoxon']:.3g}; {result['n_seeds']} shared seeds x {result['n_images']} "
          f"{result['basis']}; {verdict}")
    print(f"plot: {files[0]}")
    return 0
