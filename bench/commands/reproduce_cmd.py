"""Reproduce a figure of Punjani & Brubaker 2015 (fig3, fig4, fig6) with the paper's protocol: tunes each
method's learning rate on a subset, runs or reuses its runs, draws it and reports the wall time; or
``toader``: Toader, Brubaker & Lederman's conditioning study and refinement runs (``--scale paper``:
reports/toader/; tiny/small: reports/toader-<scale>/)."""
from __future__ import annotations

from ._device import add_device_arg, apply_device


def add_args(p) -> None:
    add_device_arg(p)
    p.add_argument("figure", choices=["fig3", "fig4", "fig6", "toader"])
    p.add_argument("--scale", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--problems", nargs="+", choices=["synthetic", "realistic"], default=None,
                   help="panels (default: fig3/fig4 both, fig6 synthetic)")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="out", help="figures go to OUT/<figure>/ (the committed ones: --out reports)")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (default 1: BLAS already uses both cores)")
    p.add_argument("--no-relion", action="store_true", help="fig6 without the RELION 3.1 entry")
    p.add_argument("--relion-particles", type=int, default=None,
                   help="fig6: RELION's random subset of training images (default: tiny 100, small 1000, paper 3000)")


def main(args) -> int:
    apply_device(args)
    if args.figure == "toader":
        from bench.experiments.toader_report import reproduce_toader
        for path in reproduce_toader(args.scale, args.out):
            print(f"written: {path}")
        return 0
    from bench.experiments.reproduce import reproduce
    problems = tuple(args.problems) if args.problems else None
    for path in reproduce(args.figure, args.scale, args.results, args.out, n_jobs=args.jobs, problems=problems,
                          relion=not args.no_relion, relion_particles=args.relion_particles):
        print(f"written: {path}")
    return 0
