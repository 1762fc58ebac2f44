"""TONGA: natural gradient from a low-rank gradient covariance (Le Roux, Manzagol & Bengio 2008)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ._common import annealed
from .base import Range, step_scale


class TONGAState(NamedTuple):
    t: int
    recent: tuple          # the last `rank` minibatch gradients (newest last)
    basis: np.ndarray | None   # (rank, n): rows [:k] the frozen gradients R = sqrt(k) U^T (reused in place)
    small_inverse: np.ndarray | None   # M = (lambda I + U^T U)^-1 / k, (k, k), or None before the first refresh
    scale: float = 1.0     # 1 / L, the harness's curvature scale


def _gram(rows: np.ndarray, flops_per_call: int = 200_000) -> np.ndarray:
    """``rows @ rows.T`` (float64 sum of float32 blocks) in blocks of columns small enough for one BLAS thread.

    One (k x n) @ (n x k) product with k = 20 and n = 2M is split by OpenBLAS
    over its 20 output columns and synchronises its threads once per block of
    ``n``: on the shared 2-core machine it took 1.0-1.3 s (load 6-11), the
    blocks below OpenBLAS's threading threshold (``k^2 n_block < 262,144``)
    0.1 s in the same runs.
    """
    k, n = rows.shape
    step = max(64, flops_per_call // max(1, k * k))
    out, block = np.zeros((k, k)), np.empty((k, k), dtype=rows.dtype)
    for start in range(0, n, step):
        part = rows[:, start:start + step]
        out += np.matmul(part, part.T, out=block)
    return out


@dataclass(frozen=True)
class TONGA:
    """Minibatch gradients preconditioned by a rank-``k`` covariance (paper: rank 20, refresh 20).

    The covariance of recent minibatch gradients ``C = U U^T`` (``U`` = the
    last ``rank`` gradients / sqrt(rank)) is formed as soon as two gradients
    exist and refreshed every ``refresh`` iterations; the step is the regularised natural gradient

    .. math:: d = \\lambda (\\lambda I + U U^T)^{-1} g
                = g - U(\\lambda I + U^T U)^{-1} U^T g,\\qquad x_{t+1} = x_t - \\eta_t d

    (Woodbury; the factor ``lambda`` keeps ``eta`` on SGD's scale, so ``lr`` is relative to the
    harness's curvature scale ``L`` as SGD's is: ``eta_t = lr / L (1 + lambda t)^-0.75``).
    ``lambda = reg * ||U||_F^2 / rank`` makes ``reg`` dimensionless; it is
    tuned with the learning rate, as in the paper.  Minibatch gradients stand
    in for per-example ones (the oracle returns batch means).  Per step: two
    matrix-vector passes over the ``k`` frozen gradients (memory-bound,
    ``4 k n`` bytes each), and one product ``R R^T`` per refresh.

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = TONGA(lr=1.0, reg=10.0, batch_size=4); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(1000): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "tonga"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(0.1, 30.0), "reg": Range(1e-2, 1e2)}
    lr: float = 2.0
    reg: float = 1.0
    rank: int = 20
    refresh: int = 20
    decay: float = 1e-2
    batch_size: int = 100

    def init(self, x0, info, rng) -> TONGAState:
        return TONGAState(0, (), None, None, step_scale(info))

    def _refresh(self, recent: tuple, basis: np.ndarray | None):
        """Freeze the recent gradients ``R`` (k, n) into ``basis`` (reused in place) and return it with
        ``M = (lambda I + R R^T / k)^-1 / k``, so that ``U (lambda I + U^T U)^-1 U^T = R^T M R``."""
        k = len(recent)
        if basis is None:
            basis = np.empty((self.rank, recent[0].size), dtype=recent[0].dtype)
        for row, g in zip(basis, recent):
            np.copyto(row, g.reshape(-1))
        gram = _gram(basis[:k]) / k
        lam = self.reg * np.trace(gram) / k
        return basis, np.linalg.inv(lam * np.eye(k) + gram) / k

    def step(self, x, state: TONGAState, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        recent = (state.recent + (g,))[-self.rank:]
        basis, small_inv = state.basis, state.small_inverse
        if len(recent) >= 2 and (small_inv is None or state.t % self.refresh == 0):
            basis, small_inv = self._refresh(recent, basis)
        eta = annealed(self.lr * state.scale, self.decay, state.t)
        if small_inv is None:
            x_new = x - eta * g
        else:
            frozen = basis[:small_inv.shape[0]]
            coeff = small_inv @ (frozen @ g.reshape(-1)).astype(np.float64)
            delta = coeff.astype(frozen.dtype) @ frozen           # R^T M R g; the step is -eta (g - this)
            delta -= g.reshape(-1)
            delta *= delta.dtype.type(eta)
            x_new = x + delta.reshape(g.shape)
        return x_new, TONGAState(state.t + 1, recent, basis, small_inv, state.scale)
