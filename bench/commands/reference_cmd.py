"""Compute (or resume) the reference optimum of a problem: the full training objective's lowest known value.

Example: cryoopt reference --problem synthetic --scale small [--sgd-epochs 20 --lbfgs-iters 200]

SGD with decaying steps from the seed-0 initial density, then full-batch
L-BFGS; and L-BFGS from the ground truth when there is one.  The lower end
point is written to RESULTS/references/<problem>-<scale>.json (objective,
test NLL, density SHA-256, how it was obtained; the density itself under
$CRYOOPT_CACHE/references/).  Interrupted? Run the same command again: it
continues from the last saved chunk of iterations.
"""
from __future__ import annotations

from ._device import add_device_arg, apply_device


def add_args(p) -> None:
    add_device_arg(p)
    p.add_argument("--problem", default="synthetic")
    p.add_argument("--scale", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--seed", type=int, default=0, help="data seed of the instance")
    p.add_argument("--sgd-epochs", type=float, default=20.0)
    p.add_argument("--lbfgs-iters", type=int, default=200, help="L-BFGS iterations per start")
    p.add_argument("--chunk", type=int, default=10, help="L-BFGS iterations between saves")
    p.add_argument("--start", action="append", choices=["init", "truth"], default=None,
                   help="where L-BFGS starts (repeatable; default both)")
    p.add_argument("--results", default="results")


def main(args) -> int:
    apply_device(args)
    from problems import load_problem

    from bench.score.reference import compute_reference
    problem = load_problem(args.problem, scale=args.scale, seed=args.seed)
    if args.sgd_epochs <= 0 or args.lbfgs_iters < 0 or args.chunk < 1:
        raise ValueError("--sgd-epochs must be > 0, --lbfgs-iters >= 0, --chunk >= 1")
    ref = compute_reference(problem, args.results, sgd_epochs=args.sgd_epochs, lbfgs_iters=args.lbfgs_iters,
                            chunk=args.chunk, starts=tuple(args.start or ("init", "truth")))
    for c in ref.get("candidates", []):
        print(f"  from {c['start']}: f = {c['train_objective']:.6f}, test NLL {c['test_nll']:.4f}, "
              f"|grad f| = {c['grad_norm']:.2e}")
    print(f"reference {args.problem}-{args.scale}: f = {ref['train_objective']:.6f}, "
          f"test NLL {ref['test_nll']:.4f} ({ref['how']})")
    return 0
