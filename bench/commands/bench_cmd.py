"""Performance benchmarks (every figure a ratio against a same-run reference).

* ``cryoopt bench oracle --problem P --scale S``: the oracle's step time, phase
  breakdown and GEMM rate against the same run's sgemm; ``--random-data``
  keeps the problem's objective configuration (box, band, quadrature) with
  random band data, so paper scales need no generated stack.
* ``cryoopt bench oracle --against REV``: this tree's value_and_grad against
  git revision REV's, alternating in one run (a ratio, and both against sgemm).
* ``cryoopt bench oracle --isolated``: value_and_grad through the oracle
  server of submitted optimizers against the in-process oracle (ratio).
* ``cryoopt bench shifts``: the shift dimension -- value_and_grad with and
  without shifts at the same band, alternated in one process.
* ``cryoopt bench optimizers``: each optimizer's own arithmetic per step
  against its oracle time in the same steps (steady state, paper defaults).
* ``cryoopt bench relion``: our exhaustive marginal likelihood against
  RELION 3.1's E-step at the same sampling on one stack.
* ``cryoopt bench device --device cuda``: the device check
  (:mod:`bench.experiments.device_check`): every call against the CPU path,
  snapshot alignment against the CPU's, realistic-paper image simulation
  against the CPU's, paper-scale steps against the same run's
  matrix-product rate, a reduced Fig. 3; one markdown report (``--report``).  ``--device numpy`` is its dry run.
"""
from __future__ import annotations

import json
from pathlib import Path

from ._device import add_device_arg, apply_device


def add_args(p) -> None:
    p.add_argument("what", choices=["oracle", "shifts", "optimizers", "relion", "device"])
    p.add_argument("--problem", default="synthetic", help="oracle: problem family (synthetic, realistic, star)")
    p.add_argument("--scale", default="paper", choices=["tiny", "small", "paper"])
    p.add_argument("--path", help="oracle --problem star: the particle file (.star or .cs)")
    p.add_argument("--random-data", action="store_true",
                   help="oracle: the scale's box, band and quadrature with random band data (no data generation)")
    p.add_argument("--r-max-fraction", type=float, help="band limit as a fraction of Nyquist (override)")
    p.add_argument("--shift-extent", type=float, help="shift search radius in pixels (override)")
    add_device_arg(p)
    p.add_argument("--report", default="reports/device-check.md", help="device: the markdown report")
    p.add_argument("--check", nargs="*", default=["synthetic:tiny", "synthetic:small", "realistic:tiny",
                                                  "realistic:small"], help="device: PROBLEM:SCALE to check")
    p.add_argument("--fig3", default="realistic:small", help="device: PROBLEM:SCALE of the reduced Fig. 3 ('' skips)")
    p.add_argument("--fig3-seconds", type=float, default=180.0, help="device: start no Fig. 3 method after this")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--dataset", help="relion: a dataset folder with particles.star and ground_truth.mrc "
                                     "(default: the cached synthetic small stack)")
    p.add_argument("--particles", type=int, nargs=2, default=[40, 200], metavar=("SMALL", "LARGE"),
                   help="relion: the two particle counts whose time difference gives the per-particle E-step")
    p.add_argument("--healpix-order", type=int, default=2)
    p.add_argument("--offset-range", type=float, default=3.0)
    p.add_argument("--work-dir", default="relion-speed", help="relion: where RELION writes its runs")
    p.add_argument("--against", metavar="REV",
                   help="oracle: also time git revision REV (a temporary worktree, in a child process), alternating")
    p.add_argument("--rounds", type=int, default=8, help="oracle --against: alternating rounds")
    p.add_argument("--isolated", action="store_true",
                   help="oracle: value_and_grad through the oracle server of submissions vs in-process (ratio)")
    p.add_argument("--optimizers", nargs="+", help="optimizers: which (default: the paper's seven)")
    p.add_argument("--steps", type=int, default=20, help="optimizers: timed steps each, after the warm-up")
    p.add_argument("--json", help="also write the numbers to this JSON file")


def _spec_geometry(problem: str, scale: str, overrides: dict) -> dict:
    """Box, band, shifts and training-set size of a family's scale (no data touched)."""
    if problem == "synthetic":
        from problems.catalog.synthetic import synthetic_spec as spec_of
    elif problem == "realistic":
        from problems.catalog.realistic import realistic_spec as spec_of
    else:
        raise SystemExit(f"--random-data: only synthetic and realistic have a fixed geometry, not {problem!r}")
    spec = spec_of(scale, **overrides)
    return {"box_size": spec.box_size, "r_max_fraction": spec.r_max_fraction,
            "shift_extent": spec.shift_extent, "n_train": spec.n_train}


def _oracle(args) -> dict:
    from problems import load_problem
    if args.against:
        from bench.experiments.against import compare_with_revision, format_comparison
        report = compare_with_revision(args.against, args.problem, args.scale, args.batch_size,
                                       steps=max(1, args.repeats // 4), rounds=args.rounds)
        print(format_comparison(report))
        return report

    from bench.experiments.perf import OracleTarget, bench_oracle, format_report, random_target
    overrides = {k: v for k, v in (("r_max_fraction", args.r_max_fraction),
                                   ("shift_extent", args.shift_extent)) if v is not None}
    if args.random_data:
        g = _spec_geometry(args.problem, args.scale, overrides)
        target = random_target(g["box_size"], g["r_max_fraction"], g["shift_extent"],
                               n_images=max(4 * args.batch_size, args.batch_size * args.repeats),
                               n_train=g["n_train"], device=args.device,
                               label=f"{args.problem}-{args.scale} (random band data)")
    else:
        if args.problem == "star":
            if not args.path:
                raise SystemExit("--problem star needs --path PARTICLES.star")
            overrides["path"] = args.path
        target = OracleTarget.from_problem(load_problem(args.problem, scale=args.scale, **overrides),
                                           device=args.device)
    report = bench_oracle(target, batch_size=args.batch_size, repeats=args.repeats)
    print(format_report(report))
    return report


def _shifts(args) -> dict:
    from bench.experiments.perf import format_shift_profile, shift_profile
    overrides = {k: v for k, v in (("r_max_fraction", args.r_max_fraction),
                                   ("shift_extent", args.shift_extent)) if v is not None}
    g = _spec_geometry(args.problem, args.scale, overrides)
    if not g["shift_extent"] > 0:
        raise SystemExit(f"{args.problem}-{args.scale} has no shifts: give --shift-extent (e.g. 2)")
    report = shift_profile(g["box_size"], g["r_max_fraction"], g["shift_extent"], batch_size=args.batch_size,
                           repeats=max(3, args.repeats // 4), device=args.device)
    print(format_shift_profile(report))
    return report


def _optimizers(args) -> dict:
    from optimizers import PAPER_SEVEN
    from problems import load_problem

    from bench.experiments.optimizer_speed import bench_optimizers, format_optimizers
    report = bench_optimizers(load_problem(args.problem, scale=args.scale), args.optimizers or PAPER_SEVEN,
                              steps=args.steps)
    print(format_optimizers(report))
    return report


def _relion(args) -> dict:
    from bench.experiments.relion_speed import compare, format_comparison
    if args.dataset:
        dataset = Path(args.dataset)
    else:
        from problems import load_problem
        from problems.catalog.synthetic import synthetic_spec
        from problems.data.cache import dataset_dir
        load_problem("synthetic", scale="small", seed=0)             # generates the stack if missing
        dataset = dataset_dir(synthetic_spec("small"), 0)
    report = compare(dataset, Path(args.work_dir), r_max_fraction=args.r_max_fraction or 0.16,
                     healpix_order=args.healpix_order, offset_range=args.offset_range,
                     n_small=args.particles[0], n_large=args.particles[1])
    print(format_comparison(report))
    return report


def _isolated(args) -> dict:
    from bench.isolation.speed import bench_isolated, format_isolated
    report = bench_isolated(args.problem, args.scale, batch_size=args.batch_size, repeats=args.repeats)
    print(format_isolated(report))
    return report


def _device(args) -> dict:
    from bench.experiments.device_check import format_markdown, run_check
    if args.device in (None, "cpu"):
        raise SystemExit("bench device needs --device cuda (or numpy for a dry run on the CPU)")
    problems = [tuple(item.split(":")) for item in args.check]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    report = run_check(args.device, problems, tuple(args.fig3.split(":")) if args.fig3 else None,
                       fig3_seconds=args.fig3_seconds,
                       on_part=lambda r: Path(args.report).write_text(format_markdown(r)))   # partial reports
    print(format_markdown(report))
    return report


def main(args) -> int:
    from problems.model.devices import default_device
    apply_device(args)
    args.device = args.device or default_device()
    if args.what == "oracle" and args.isolated:
        args.what = "isolated"
    report = {"isolated": _isolated, "oracle": _oracle, "shifts": _shifts, "optimizers": _optimizers,
              "relion": _relion,
              "device": _device}[args.what](args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return 0
