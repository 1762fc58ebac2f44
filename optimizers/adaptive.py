"""Per-voxel adaptive step sizes: AdaGrad (paper Sec. 4) and Adam."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .base import Range


class AdaGradState(NamedTuple):
    sum_sq: np.ndarray


@dataclass(frozen=True)
class AdaGrad:
    """AdaGrad (Duchi et al. 2011), no annealing (as in the paper).

    .. math:: G_t = G_{t-1} + g_t^2,\\quad x_{t+1} = x_t - \\eta\\, g_t / (\\sqrt{G_t} + \\epsilon)

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = AdaGrad(lr=0.5, batch_size=4); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(2000): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "adagrad"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(1e-4, 1e0)}
    lr: float = 0.02
    eps: float = 1e-8
    batch_size: int = 100

    def init(self, x0, info, rng) -> AdaGradState:
        return AdaGradState(np.zeros_like(x0))

    def step(self, x, state: AdaGradState, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        sum_sq = state.sum_sq + g * g
        return x - self.lr * g / (np.sqrt(sum_sq) + self.eps), AdaGradState(sum_sq)


class AdamState(NamedTuple):
    t: int
    m: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) with bias correction.

    .. math:: m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\ v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,\\
              x_{t+1} = x_t - \\eta\\, \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = Adam(lr=0.05, batch_size=4); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(3000): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "adam"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    search_space: ClassVar[dict] = {"lr": Range(1e-4, 1e0)}
    lr: float = 0.005
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch_size: int = 100

    def init(self, x0, info, rng) -> AdamState:
        return AdamState(0, np.zeros_like(x0), np.zeros_like(x0))

    def step(self, x, state: AdamState, oracle, rng):
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        t = state.t + 1
        m = self.beta1 * state.m + (1 - self.beta1) * g
        v = self.beta2 * state.v + (1 - self.beta2) * g * g
        m_hat, v_hat = m / (1 - self.beta1**t), v / (1 - self.beta2**t)
        return x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), AdamState(t, m, v)
