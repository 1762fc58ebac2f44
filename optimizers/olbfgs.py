"""Online LBFGS (Schraudolph, Yu & Günter 2007), paper Sec. 4 (m = 30)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ._common import annealed, dot
from .base import Range, step_scale


class OLBFGSState(NamedTuple):
    t: int
    pairs: tuple   # ((s, y, 1 / s.y), ...), newest last
    scale: float = 1.0     # 1 / L, the harness's curvature scale


def two_loop(g: np.ndarray, pairs: tuple, epsilon: float) -> np.ndarray:
    """``H g`` by the LBFGS two-loop recursion; ``H_0 = mean_i (s_i.y_i / y_i.y_i)`` (oLBFGS)."""
    if not pairs:
        return epsilon * g
    q = g
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(s, q)
        alphas.append(a)
        q = q - a * y
    gamma = np.mean([dot(s, y) / dot(y, y) for s, y, _ in pairs])
    r = gamma * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * dot(y, r)
        r = r + (a - b) * s
    return r.astype(g.dtype)


@dataclass(frozen=True)
class OLBFGS:
    """Stochastic LBFGS with curvature pairs measured on the step's own minibatch.

    Each iteration draws ``B``, computes ``g = grad f_B(x)``, steps
    ``x' = x - eta_t H g`` and evaluates ``grad f_B(x')`` on the *same* batch
    (charged: 2 per image per iteration) to form ``s = x' - x``,
    ``y = grad f_B(x') - g + lambda s``.  Pairs with ``s.y <= 0`` are skipped.

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = OLBFGS(lr=0.5, batch_size=8); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(100): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "olbfgs"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(1e-2, 1e1), "epsilon": Range(0.1, 30.0)}
    lr: float = 0.5
    memory: int = 30
    epsilon: float = 2.0         # step before any curvature pair exists, relative: H_0 = epsilon / L
    damping: float = 0.0         # lambda in y = grad' - grad + lambda s
    decay: float = 1e-2
    batch_size: int = 100

    def init(self, x0, info, rng) -> OLBFGSState:
        return OLBFGSState(0, (), step_scale(info))

    def step(self, x, state: OLBFGSState, oracle, rng):
        idx = oracle.next_batch(self.batch_size)
        _, g = oracle.value_and_grad(x, idx)
        x_new = x - annealed(self.lr, self.decay, state.t) * two_loop(g, state.pairs, self.epsilon * state.scale)
        _, g_new = oracle.value_and_grad(x_new, idx)
        s = x_new - x
        y = g_new - g + self.damping * s
        sy = dot(s, y)
        pairs = state.pairs
        if sy > 0 and np.isfinite(sy):
            pairs = (pairs + ((s, y, 1.0 / sy),))[-self.memory:]
        return x_new, OLBFGSState(state.t + 1, pairs, state.scale)
