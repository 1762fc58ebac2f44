"""Hessian-free optimisation (Martens 2010), paper Sec. 4: 5 CG iterations, minibatch 300."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ._common import dot
from .base import Range, step_scale


class HFState(NamedTuple):
    t: int
    previous: np.ndarray    # last CG solution (warm start)
    scale: float = 1.0      # 1 / L, the harness's curvature scale


def truncated_cg(hvp, g: np.ndarray, damping: float, iterations: int, p0: np.ndarray) -> np.ndarray:
    """Approximately solve ``(H + damping I) p = -g`` by ``iterations`` CG steps from ``p0``.

    Stops early on non-positive curvature (the Hessian of the marginal NLL
    is indefinite away from a solution) and returns the last iterate.
    """
    p = p0
    r = -g - (hvp(p) + damping * p) if dot(p0, p0) > 0 else -g
    d = r
    rr = dot(r, r)
    for _ in range(iterations):
        if rr == 0:          # solved exactly
            break
        hd = hvp(d) + damping * d
        curvature = dot(d, hd)
        if curvature <= 0:
            break
        alpha = rr / curvature
        p = p + alpha * d
        r = r - alpha * hd
        rr_new = dot(r, r)
        d = r + (rr_new / rr) * d
        rr = rr_new
    return p


@dataclass(frozen=True)
class HessianFree:
    """Truncated-Newton steps with damped minibatch Hessian-vector products.

    Per iteration on one minibatch ``B`` (size 300): ``g = grad f_B(x)``,
    ``p ~ -(H_B + lambda I)^-1 g`` by ``cg_iterations`` CG steps warm-started
    from ``warm_start * p_prev`` (Martens' 0.95), ``x <- x + eta p``.  The damping is relative to
    the harness's curvature scale ``L``: ``lambda = damping * L`` (``eta`` is dimensionless).
    Cost per image: 1 (gradient) + 2 per Hessian-vector product.

    >>> from optimizers.testing import QuadraticOracle
    >>> o = QuadraticOracle(); opt = HessianFree(batch_size=8, damping=1e-4); rng = np.random.default_rng(0)
    >>> x = np.zeros(o.shape); s = opt.init(x, o.info(), rng)
    >>> for _ in range(30): x, s = opt.step(x, s, o, rng)
    >>> bool(np.abs(x - o.minimiser).max() < 1e-3)
    True
    """

    name: ClassVar[str] = "hessian-free"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "hvp", "next_batch"})
    search_space: ClassVar[dict] = {"damping": Range(1e-2, 1e1), "lr": Range(1e-1, 1e0)}
    lr: float = 1.0
    damping: float = 1.0         # relative: lambda = damping * L (synthetic tiny: 0.2 blew up, 0.5 and 1 improve)
    cg_iterations: int = 5
    warm_start: float = 0.95
    batch_size: int = 300

    def init(self, x0, info, rng) -> HFState:
        return HFState(0, np.zeros_like(x0), step_scale(info))

    def step(self, x, state: HFState, oracle, rng):
        idx = oracle.next_batch(self.batch_size)
        _, g = oracle.value_and_grad(x, idx)
        p = truncated_cg(lambda v: oracle.hvp(x, v, idx), g, self.damping / state.scale, self.cg_iterations,
                         self.warm_start * state.previous)
        return x + self.lr * p, HFState(state.t + 1, p, state.scale)
