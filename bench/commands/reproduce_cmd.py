"""Reproduce a figure of Punjani & Brubaker 2015 (fig3, fig4, fig6): runs or reuses its runs, then draws it."""
from __future__ import annotations


def add_args(p) -> None:
    p.add_argument("figure", choices=["fig3", "fig4", "fig6"])
    p.add_argument("--scale", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="reports", help="figures go to OUT/<figure>/")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (default 1: BLAS already uses both cores)")


def main(args) -> int:
    from ..reproduce import reproduce
    for path in reproduce(args.figure, args.scale, args.results, args.out, n_jobs=args.jobs):
        print(f"written: {path}")
    return 0
