"""An example submission: SGD with Polyak-Ruppert averaging of the iterates.

Submit it with::

    cryoopt submit examples/my_optimizer.py:MyOptimizer --problem synthetic --scale tiny
    cryoopt leaderboard
"""
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from optimizers import Range
from optimizers.base import step_scale


class State(NamedTuple):
    t: int
    average: np.ndarray
    scale: float          # 1 / L: the harness's curvature scale, as the built-ins use it


@dataclass(frozen=True)
class MyOptimizer:
    """SGD whose reported iterate is the running average of the last steps (tail averaging).

    .. math:: y_{t+1} = y_t - \\tfrac{\\mathrm{lr}}{L} \\nabla f_{B_t}(y_t),\\quad
              x_{t+1} = (1 - \\tfrac{1}{\\min(t + 1, w)})\\, x_t + \\tfrac{1}{\\min(t + 1, w)}\\, y_{t+1}

    The step is relative like the built-ins' (``lr = 1`` is gradient descent's
    ``1/L`` step, ``L = info.curvature`` the harness's curvature scale), so one
    ``lr`` suits every scale.  The harness evaluates the ``x`` returned by
    ``step``; the raw SGD iterate ``y`` lives in the state.
    """

    name: ClassVar[str] = "averaged-sgd"
    search_space: ClassVar[dict] = {"lr": Range(0.1, 30.0)}
    lr: float = 2.0
    window: int = 20
    batch_size: int = 100

    def init(self, x0, info, rng):
        return State(0, np.array(x0, dtype=np.float32), step_scale(info))

    def step(self, x, state, oracle, rng):
        _, g = oracle.value_and_grad(state.average, oracle.next_batch(self.batch_size))
        y = state.average - self.lr * state.scale * g
        w = 1.0 / min(state.t + 1, self.window)
        return (1 - w) * x + w * y, State(state.t + 1, y, state.scale)
