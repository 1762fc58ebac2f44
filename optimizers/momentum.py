"""Classical momentum (CM) and Nesterov's accelerated gradient (NAG), paper Sec. 4."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ._common import annealed, momentum_schedule
from .base import Range, step_scale


class MomentumState(NamedTuple):
    t: int
    velocity: np.ndarray
    scale: float = 1.0     # 1 / L, the harness's curvature scale


@dataclass(frozen=True)
class Momentum:
    """SGD with classical momentum.

    .. math:: v_{t+1} = \\mu_t v_t - \\eta_t \\nabla f_{B_t}(x_t),\\quad x_{t+1} = x_t + v_{t+1}

    with ``mu_t = min{0.9, 1 - 2^(-1 - log2(floor(t/100) + 1))}`` and the
    paper's annealed ``eta_t = lr / L (1 + lambda t)^-0.75`` (``lr`` relative to the harness's
    curvature scale ``L``; the default 0.2 makes the terminal effective step ``lr / (1 - mu)`` = 2,
    SGD's default).

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = Momentum(lr=0.2, batch_size=4); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(400): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "momentum"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(0.01, 3.0)}
    nesterov: ClassVar[bool] = False
    lr: float = 0.2
    decay: float = 1e-2
    mu_max: float = 0.9
    batch_size: int = 100

    def init(self, x0, info, rng) -> MomentumState:
        return MomentumState(0, np.zeros_like(x0), step_scale(info))

    def step(self, x, state: MomentumState, oracle, rng):
        mu = momentum_schedule(state.t, self.mu_max)
        eta = annealed(self.lr * state.scale, self.decay, state.t)
        idx = oracle.next_batch(self.batch_size)
        at = x + mu * state.velocity if self.nesterov else x
        _, g = oracle.value_and_grad(at, idx)
        velocity = mu * state.velocity - eta * g
        return x + velocity, MomentumState(state.t + 1, velocity, state.scale)


@dataclass(frozen=True)
class Nesterov(Momentum):
    """Nesterov's accelerated gradient in Sutskever's form (gradient at the look-ahead point).

    .. math:: v_{t+1} = \\mu_t v_t - \\eta_t \\nabla f_{B_t}(x_t + \\mu_t v_t),\\quad x_{t+1} = x_t + v_{t+1}
    """

    name: ClassVar[str] = "nesterov"
    nesterov: ClassVar[bool] = True
