"""Preconditioned SGD with a Hutchinson diagonal (Toader, Brubaker & Lederman 2025, Algorithm 1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from problems.protocol import hutchinson_diagonal

from ._common import armijo_backtrack
from .base import Range


class HutchinsonState(NamedTuple):
    t: int
    probes: int              # probes averaged into `mean_probe`
    mean_probe: np.ndarray   # A: cumulative mean of z * H_B z
    diagonal: np.ndarray     # D: exponential average of A
    eta: float
    images_in_epoch: int


@dataclass(frozen=True)
class HutchinsonSGD:
    """SGD preconditioned by an online estimate of ``diag(H)`` (reference repo's Algorithm 1).

    Each iteration on a minibatch ``B``:

    1. one Rademacher probe ``z``: ``h = z * H_B(x) z`` (Hessian-vector product, charged 2 per image);
    2. ``A <- ((k - 1) A + h) / k`` and ``D <- beta D + (1 - beta) A``;
    3. ``D_hat = max(|D|, alpha max|D|)`` (``alpha`` relative here: our
       densities' scale is not the repo's);
    4. ``eta <- 1.2 eta``; halve ``eta`` until
       ``f_B(x - eta g / D_hat) <= f_B(x) - c eta sum(g^2 / D_hat)`` (each trial
       a value, charged 0.5 per image); ``eta`` resets to ``eta0`` each epoch.
       If ``max_halvings`` trials all fail, the step is rejected
       (:func:`optimizers._common.armijo_backtrack`).

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = HutchinsonSGD(batch_size=8); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(600): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "hutchinson-sgd"
    needs: ClassVar[frozenset] = frozenset({"value", "value_and_grad", "hvp", "next_batch"})
    search_space: ClassVar[dict] = {"eta0": Range(1e-2, 1e2), "alpha": Range(1e-4, 1e-1)}
    eta0: float = 1.0
    beta: float = 0.9
    armijo: float = 0.99
    alpha: float = 1e-2
    max_halvings: int = 30
    batch_size: int = 100

    def init(self, x0, info, rng) -> HutchinsonState:
        ones = np.ones_like(x0)
        return HutchinsonState(0, 0, np.zeros_like(x0), ones, self.eta0, 0)

    def step(self, x, state: HutchinsonState, oracle, rng):
        idx = oracle.next_batch(self.batch_size)
        h = next(hutchinson_diagonal(lambda z: oracle.hvp(x, z, idx), x.shape, 1, rng, x.dtype))  # z * H_B z
        k = state.probes + 1
        mean_probe = state.mean_probe + (h - state.mean_probe) / k
        diagonal = self.beta * state.diagonal + (1 - self.beta) * mean_probe
        d_abs = np.abs(diagonal)
        d_hat = np.maximum(d_abs, self.alpha * d_abs.max())
        f, g = oracle.value_and_grad(x, idx)
        direction = g / d_hat
        decrease = float(np.sum(g * direction, dtype=np.float64))
        epoch_done = state.images_in_epoch + idx.size >= oracle.n_train
        x_new, eta = armijo_backtrack(oracle, x, direction, idx, f, decrease, 1.2 * state.eta, self.armijo,
                                      self.max_halvings)
        images = 0 if epoch_done else state.images_in_epoch + idx.size
        return x_new, HutchinsonState(state.t + 1, k, mean_probe, diagonal,
                                      self.eta0 if epoch_done else eta, images)
