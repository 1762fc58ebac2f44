"""Build every report from run records: convergence, snapshots, FSC, profiles, leaderboard (MD + HTML)."""
from __future__ import annotations


def add_args(p) -> None:
    p.add_argument("results", nargs="?", default="results", help="results directory (default results/)")
    p.add_argument("--out", default="out/report", help="output directory (index.html goes there)")


def main(args) -> int:
    from bench.report import build_report
    files = build_report(args.results, args.out)
    print(f"{len(files)} files written under {args.out}; open {args.out}/index.html")
    return 0
