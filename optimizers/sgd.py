"""Stochastic gradient descent (paper Sec. 4)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from ._common import annealed
from .base import Range, step_scale


class SGDState(NamedTuple):
    t: int
    scale: float = 1.0     # 1 / L, the harness's curvature scale


@dataclass(frozen=True)
class SGD:
    """Minibatch SGD with the paper's annealing.

    .. math:: x_{t+1} = x_t - \\frac{\\eta_0}{L} (1 + \\lambda t)^{-0.75} \\nabla f_{B_t}(x_t)

    ``lr`` (``eta_0``) is relative to the harness's curvature scale ``L``
    (``info.curvature``: the largest Hessian eigenvalue at ``x0``).  The
    default 2 is the largest power of two that stayed finite at every scale
    measured (synthetic tiny: 4 diverges; paper: absolute 1.0, i.e. 38, diverges
    after 7,600 evaluations; small: 6 converges).

    >>> from optimizers.testing import QuadraticOracle
    >>> import numpy as np
    >>> oracle = QuadraticOracle(); opt = SGD(lr=1.0, batch_size=4)
    >>> x, rng = np.zeros(oracle.shape), np.random.default_rng(0)
    >>> state = opt.init(x, oracle.info(), rng)
    >>> for _ in range(500): x, state = opt.step(x, state, oracle, rng)
    >>> bool(np.abs(x - oracle.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "sgd"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(0.1, 30.0)}
    lr: float = 2.0
    decay: float = 1e-2
    batch_size: int = 100

    def init(self, x0, info, rng) -> SGDState:
        return SGDState(t=0, scale=step_scale(info))

    def step(self, x, state: SGDState, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        return x - annealed(self.lr * state.scale, self.decay, state.t) * g, state._replace(t=state.t + 1)
