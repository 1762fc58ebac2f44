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
    basis: np.ndarray | None   # (rank, n) frozen factor U^T of the covariance, or None
    small_inverse: np.ndarray | None   # (lambda I + U^T U)^-1, (rank, rank)
    scale: float = 1.0     # 1 / L, the harness's curvature scale


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
    in for per-example ones (the oracle returns batch means).

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

    def _refresh(self, recent: tuple):
        u_t = np.stack([g.ravel() for g in recent]).astype(np.float64) / np.sqrt(len(recent))
        gram = u_t @ u_t.T
        lam = self.reg * np.trace(gram) / len(recent)
        return u_t.astype(np.float32), np.linalg.inv(lam * np.eye(len(recent)) + gram)

    def step(self, x, state: TONGAState, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        recent = (state.recent + (g,))[-self.rank:]
        basis, small_inv = state.basis, state.small_inverse
        if len(recent) >= 2 and (basis is None or state.t % self.refresh == 0):
            basis, small_inv = self._refresh(recent)
        d = g
        if basis is not None:
            coeff = small_inv @ (basis @ g.ravel()).astype(np.float64)
            d = g - (coeff.astype(np.float32) @ basis).reshape(g.shape)
        x_new = x - annealed(self.lr * state.scale, self.decay, state.t) * d
        return x_new, TONGAState(state.t + 1, recent, basis, small_inv, state.scale)
