"""Toader, Brubaker & Lederman's refinement runs on the known-pose problem, with a certified reference.

**The variable.**  Their unknown is the DFT inside a ball, where a diagonal
preconditioner means something (in voxel space the Hessian's diagonal is
nearly constant: every voxel sees every frequency).  Ours is a real volume
``x``; the runs here move in the orthonormal band coordinates ``a`` of
:class:`problems.model.spectra.BandBasis` (``x = U a``, ``U^T U = I``)
through :class:`BandOracle`, a view of the problem's *counting* oracle:
``grad_a f = U^T grad_x f``, ``H_a z = U^T H_x U z``, every call charged as usual.

**The runs** (their constants; one epoch = ``ceil(K / B)`` iterations, ``B = K / 30``
as their 1000 of 30,000; the step resets to ``eta0`` every epoch):

* ``sgd``: :class:`ArmijoSGD` without preconditioner, ``eta0 = 1``, ``eta <- 2 eta``
  every iteration, then halved until ``f_B(a - eta g) <= f_B(a) - c eta |g|^2``;
* ``sgd-diag``: the same with the exact ``diag(H)`` (analytic,
  :meth:`problems.model.spectra.KnownPoseHessian.exact_diagonal`; theirs was
  Hutchinson over 1000 epochs), ``eta0 = 10``, ``eta <- 1.2 eta``;
* ``alg1``: their Algorithm 1 = the project's optimizer
  :class:`optimizers.hutchinson_sgd.HutchinsonSGD` (one Rademacher probe per
  iteration, ``beta = 0.9``, ``eta0 = 10``, ``c = 0.99``), threshold
  ``alpha = 1 / (largest shell point count)`` relative to ``max |D|``
  (their 5.21e-6 is absolute in their units, where ``max H ~ 1``);
* ``alg1-nothreshold``: ``alpha = 0``.

**The reference** ``a*``: preconditioned CG (``diag(H)^{-1}``) on the full
quadratic ``f(a) = 1/2 a^T H a - b^T a + const`` in float64 (the uncharged
:class:`~problems.model.spectra.KnownPoseHessian`).  With ``r = b - H a*``
the suboptimality of any ``a`` is exact up to the reference's own gap,

.. math:: f(a) - f(a^*) = \\tfrac12 (a - a^*)^T H (a - a^*) - r^T (a - a^*), \\qquad
          0 \\le f(a^*) - f_{\\min} = \\tfrac12 r^T H^{-1} r \\le \\frac{\\|r\\|^2}{2 \\lambda_{\\min}},

with ``lambda_min`` from Lanczos: a certified bound.  FSC against the
reference per integer shell ``s = round(|xi|)``:
``sum a_j a*_j / sqrt(sum a_j^2 sum a*_j^2)`` over the shell's coordinates
(``Re(x conj y) = x_re y_re + x_im y_im``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg, eigsh

from optimizers import OptimizerInfo
from optimizers._common import armijo_backtrack
from optimizers.hutchinson_sgd import HutchinsonSGD
from problems.model.spectra import KnownPoseHessian


class BandOracle:
    """The problem's counting oracle in band coordinates ``a`` (``x = U a``): same costs, same batches."""

    def __init__(self, oracle, basis):
        self._o, self._basis = oracle, basis
        self.n_train, self.shape, self.dtype = oracle.n_train, (basis.size,), np.dtype(np.float64)
        self.budget = oracle.budget

    @property
    def evals(self) -> float:
        return self._o.evals

    def _x(self, a):
        return self._basis.to_volume(np.asarray(a, np.float64), self._o.dtype)

    def value(self, a, idx) -> float:
        return self._o.value(self._x(a), idx)

    def value_and_grad(self, a, idx):
        f, g = self._o.value_and_grad(self._x(a), idx)
        return f, self._basis.from_volume(g.astype(np.float64))

    def hvp(self, a, v, idx):
        return self._basis.from_volume(self._o.hvp(self._x(a), self._x(v), idx).astype(np.float64))

    def next_batch(self, size: int):
        return self._o.next_batch(size)


class ArmijoState(NamedTuple):
    eta: float
    images_in_epoch: int


@dataclass(frozen=True)
class ArmijoSGD:
    """SGD with a fixed diagonal preconditioner ``D`` (or none), step growth and Armijo halving.

    The line search is Algorithm 1's (:func:`optimizers._common.armijo_backtrack`): a step none of whose
    ``max_halvings`` trials passes the Armijo test is rejected (``a`` kept).
    """

    batch_size: int
    eta0: float = 1.0
    growth: float = 2.0
    armijo: float = 0.99
    diagonal: np.ndarray | None = None
    max_halvings: int = 30
    name: str = "sgd"

    def init(self, x0, info, rng) -> ArmijoState:
        return ArmijoState(self.eta0, 0)

    def step(self, a, state: ArmijoState, oracle, rng):
        idx = oracle.next_batch(self.batch_size)
        f, g = oracle.value_and_grad(a, idx)
        d = g if self.diagonal is None else g / self.diagonal
        decrease = float(g @ d)
        a_new, eta = armijo_backtrack(oracle, a, d, idx, f, decrease, self.growth * state.eta, self.armijo,
                                      self.max_halvings)
        done = state.images_in_epoch + idx.size >= oracle.n_train
        return a_new, ArmijoState(self.eta0 if done else eta, 0 if done else state.images_in_epoch + idx.size)


def largest_shell_count(r_max: float) -> int:
    """Most integer 3D frequencies in one shell ``round(|xi|) = s``, ``s <= r_max``."""
    r = int(np.ceil(r_max)) + 1
    g = np.arange(-r, r + 1)
    rad = np.rint(np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)).ravel()
    return int(np.bincount(rad[rad <= r_max].astype(int)).max())


def reference_optimum(hess: KnownPoseHessian, rtol: float = 1e-10, lanczos_tol: float = 1e-6) -> dict:
    """``a*`` by diagonally preconditioned CG, its residual, and the certified bound on its gap."""
    op = hess.operator()
    t0 = time.perf_counter()
    b = -hess.gradient_at_zero()
    diag = hess.exact_diagonal()
    diag_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    iters = [0]

    def count(_):
        iters[0] += 1

    a, info = cg(op, b, rtol=rtol, maxiter=20_000, M=LinearOperator(op.shape, matvec=lambda v: v / diag),
                 callback=count)
    cg_seconds = time.perf_counter() - t0
    r = b - op.matvec(a)
    t0 = time.perf_counter()
    spec = lanczos_extremes(op, tol=lanczos_tol)
    lanczos_seconds = time.perf_counter() - t0
    return {"a": a, "residual": r, "diagonal": diag, "b": b, "op": op, "cg_iterations": iters[0],
            "cg_info": int(info), "cg_seconds": cg_seconds,
            "diagonal_seconds": diag_seconds, "lanczos_seconds": lanczos_seconds, "residual_norm": float(np.linalg.norm(r)),
            "relative_residual": float(np.linalg.norm(r) / np.linalg.norm(b)),
            "lambda_max": spec["lambda_max"], "lambda_min": spec["lambda_min"],
            "kappa_trilinear": spec["lambda_max"] / spec["lambda_min"], "lanczos_matvecs": spec["matvecs"],
            "lanczos_tol": lanczos_tol, "ritz_residual_max": spec["residual_max"],
            "ritz_residual_min": spec["residual_min"],
            "gap_bound": float(r @ r / (2 * (spec["lambda_min"] - spec["residual_min"])))}


def lanczos_extremes(op: LinearOperator, tol: float = 1e-6) -> dict:
    """``lambda_max``, ``lambda_min`` by implicitly restarted Lanczos (``eigsh``) with their Ritz residuals.

    For a symmetric ``H`` and a unit Ritz pair ``(theta, v)`` some eigenvalue
    lies within ``|H v - theta v|`` of ``theta``: the residuals say how
    converged the two ends are (not that no smaller eigenvalue exists;
    Lanczos from a random start finds the extremes with probability one).
    The gap bound uses ``lambda_min - residual``.
    """
    count = [0]

    def mv(a):
        count[0] += 1
        return op.matvec(a)

    counted = LinearOperator(op.shape, dtype=np.float64, matvec=mv)
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    ncv = min(op.shape[0] - 1, max(40, min(120, op.shape[0] // 10)))
    out = {}
    for which, key in (("LA", "max"), ("SA", "min")):
        w, v = eigsh(counted, k=1, which=which, tol=tol, ncv=ncv, v0=v0, maxiter=20 * op.shape[0])
        out[f"lambda_{key}"] = float(w[0])
        out[f"residual_{key}"] = float(np.linalg.norm(op.matvec(v[:, 0]) - w[0] * v[:, 0]))
    out["matvecs"] = count[0]
    return out


def suboptimality(ref: dict, a: np.ndarray) -> float:
    """``f(a) - f(a*)`` exactly for the quadratic (module docstring), float64."""
    e = a - ref["a"]
    return float(0.5 * e @ ref["op"].matvec(e) - ref["residual"] @ e)


def shell_fsc(basis, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC per integer shell ``0..floor(r_max)`` between band coordinates ``a`` and ``b``."""
    s = np.rint(basis.radius).astype(int)
    n = s.max() + 1
    num = np.bincount(s, a * b, n)
    den = np.sqrt(np.bincount(s, a * a, n) * np.bincount(s, b * b, n))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def methods(batch: int, diagonal: np.ndarray, alpha: float) -> dict:
    """Their four runs (module docstring), keyed by name."""
    return {"sgd": ArmijoSGD(batch, eta0=1.0, growth=2.0),
            "sgd-diag": ArmijoSGD(batch, eta0=10.0, growth=1.2, diagonal=diagonal, name="sgd-diag"),
            "alg1": HutchinsonSGD(eta0=10.0, beta=0.9, armijo=0.99, alpha=alpha, batch_size=batch),
            "alg1-nothreshold": HutchinsonSGD(eta0=10.0, beta=0.9, armijo=0.99, alpha=0.0, batch_size=batch)}


def run_method(problem, hess: KnownPoseHessian, ref: dict, opt, epochs: int, seed: int = 0) -> dict:
    """``epochs`` epochs of ``opt`` in band coordinates from the initial density; per-epoch records."""
    basis = hess.basis
    oracle = BandOracle(problem.oracle(), basis)
    a = basis.from_volume(problem.initial_density(seed).astype(np.float64))
    return run_epochs(oracle, a, opt, epochs, lambda a, epoch, evals, seconds, eta:
                      _row(ref, basis, a, epoch, evals, seconds, eta), seed)


def run_epochs(oracle, x, opt, epochs: int, row, seed: int = 0, progress=None) -> dict:
    """``epochs`` epochs of ``opt`` on ``oracle`` from ``x``; ``row(x, epoch, evals, seconds, eta)`` records each
    epoch outside the timed steps (``progress(row)`` after each, if given)."""
    rng = np.random.default_rng([seed, 0x70AD])
    state = opt.init(x, OptimizerInfo(oracle.n_train, oracle.shape, None), rng)
    per_epoch = math.ceil(oracle.n_train / opt.batch_size)
    rows = [row(x, 0, oracle.evals, 0.0, getattr(state, "eta", None))]
    seconds = 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        for _ in range(per_epoch):
            x, state = opt.step(x, state, oracle, rng)
        seconds += time.perf_counter() - t0
        rows.append(row(x, epoch, oracle.evals, seconds, getattr(state, "eta", None)))
        if progress:
            progress(rows[-1])
    return {"rows": rows, "final": x, "seconds_per_epoch": seconds / epochs, "iterations_per_epoch": per_epoch,
            "evals_per_epoch": oracle.evals / epochs}


def _row(ref, basis, a, epoch, evals, seconds, eta) -> dict:
    return {"epoch": epoch, "suboptimality": suboptimality(ref, a), "evals": float(evals), "seconds": seconds,
            "eta": None if eta is None else float(eta), "fsc": shell_fsc(basis, a, ref["a"]).tolist()}


def toader_runs(problem, epochs: int = 10, progress: bool = True, lanczos_tol: float = 1e-6) -> dict:
    """The reference and the four runs on ``problem`` (a known-pose :class:`problems.Problem`)."""
    t0 = time.perf_counter()
    hess = KnownPoseHessian(problem)
    ref = reference_optimum(hess, lanczos_tol=lanczos_tol)
    ref_seconds = time.perf_counter() - t0
    if progress:
        print(f"  reference: PCG {ref['cg_iterations']} iterations, relative residual {ref['relative_residual']:.2e}, "
              f"gap <= {ref['gap_bound']:.2e}, kappa (trilinear) {ref['kappa_trilinear']:.4g} ({ref_seconds:.0f} s)")
    batch = max(1, problem.n_train // 30)
    warm = problem.oracle()                      # compile the kernels outside the timed epochs
    x0 = problem.initial_density(0)
    warm.value_and_grad(x0, np.arange(batch)), warm.hvp(x0, x0, np.arange(batch))
    alpha = 1.0 / largest_shell_count(problem.band.r_max)
    out = {"reference": {k: v for k, v in ref.items() if k not in ("a", "residual", "diagonal", "b", "op")},
           "reference_seconds": ref_seconds, "batch": batch, "alpha": alpha, "runs": {},
           "f_ref_over_k": None}
    for name, opt in methods(batch, ref["diagonal"], alpha).items():
        out["runs"][name] = run_method(problem, hess, ref, opt, epochs)
        out["runs"][name].pop("final")
        if progress:
            last = out["runs"][name]["rows"][-1]
            print(f"  {name}: f - f* = {last['suboptimality']:.4g} after {epochs} epochs "
                  f"({out['runs'][name]['seconds_per_epoch']:.2f} s/epoch)")
    out["exact_diagonal"] = ref["diagonal"]
    out["basis_radius"] = hess.basis.radius
    return out
