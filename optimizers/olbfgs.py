"""Online LBFGS (Schraudolph, Yu & Günter 2007), paper Sec. 4 (m = 30).

The direction is the LBFGS two-loop recursion

.. math::

    q \\leftarrow g;\\quad a_i = \\rho_i s_i^\\top q,\\ q \\leftarrow q - a_i y_i\\ (i = k..1);\\quad
    r \\leftarrow \\gamma q;\\quad b_i = \\rho_i y_i^\\top r,\\ r \\leftarrow r + (a_i - b_i) s_i\\ (i = 1..k)

with ``rho_i = 1 / s_i.y_i`` and oLBFGS's ``gamma = mean_i s_i.y_i / y_i.y_i``.
Every intermediate ``q`` and ``r`` lies in the span of ``g`` and the pairs,
so the recursion runs on coefficient vectors (:func:`two_loop_coefficients`)
with the Gram entries ``s_i.g, y_i.g`` (one matrix-vector pass over the
history per step), ``y_i.y_j`` and ``s_i.y_j`` for ``i`` older than ``j``
(the only ones the recursion reads; kept, extended by one pass when a pair
arrives); the direction is then one more pass,
``H g = r_g g + sum_i (r_{s_i} s_i + r_{y_i} y_i)``.  The plain recursion
makes 4m + 2m passes over 2M-voxel vectors at paper scale (about 330 ms a
step); this makes 3 (memory-bound: 2m + 2 float32 vectors of ``n`` voxels,
``(2m + 2) 4 n`` bytes = 0.5 GB a pass at paper scale, 25 ms at 20 GB/s).  The pairs live in one
float32 array updated in place (a spare slot takes the candidate pair, so a
rejected pair overwrites nothing): the state's history is shared with the
states before it, which an optimizer's caller never reuses.

Rounding: the coefficient form is closer to the float64 recursion than the
float32 vector recursion it replaced (direction error 2.9e-7 against 7.6e-7,
small scale), and the iterates agree with it to 1e-5 over short runs
(tests/optimizers/test_history_optimizers.py).  Over long runs at paper scale
oLBFGS amplifies any rounding: after 100 steps the old code gave test NLL
100.74, the same old code from ``x0`` perturbed by 1e-6 (relative) 98.89, and
this code 98.89 -- a difference of float32 rounding, not of algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ._common import annealed
from .base import Range, step_scale


class PairHistory:
    """The last ``m`` curvature pairs in one array, and their Gram entries.

    ``vectors[2 k]`` is ``s`` and ``vectors[2 k + 1]`` is ``y`` of slot ``k``
    (``m + 1`` slots: ``m`` pairs and a spare for the candidate);
    ``sy[a, b] = s_a . y_b`` (kept where ``a`` is not newer than ``b``) and
    ``yy[a, b] = y_a . y_b`` (float64);
    ``order`` lists the slots of the kept pairs, oldest first.
    """

    def __init__(self, memory: int, size: int, dtype):
        self.memory = int(memory)
        # zeros: slots not yet written read as zero pages (their coefficients are 0 anyway)
        self.vectors = np.zeros((2 * (self.memory + 1), size), dtype=dtype)
        self.sy = np.zeros((self.memory + 1, self.memory + 1))
        self.yy = np.zeros((self.memory + 1, self.memory + 1))
        self.order: list[int] = []
        self.spare = 0

    def __len__(self) -> int:
        return len(self.order)

    def direction(self, g: np.ndarray, epsilon: float) -> np.ndarray:
        """``H g`` (flat, ``g``'s dtype): ``epsilon g`` without pairs, else the two-loop recursion."""
        if not self.order:
            return epsilon * g
        gdots = (self.vectors @ g).astype(np.float64)                       # pass 1: s_k.g, y_k.g
        slots = np.asarray(self.order)
        r_g, r_s, r_y = two_loop_coefficients(gdots[2 * slots], gdots[2 * slots + 1],
                                              self.sy[np.ix_(slots, slots)], self.yy[np.ix_(slots, slots)])
        coef = np.zeros(self.vectors.shape[0], dtype=self.vectors.dtype)
        coef[2 * slots], coef[2 * slots + 1] = r_s, r_y
        d = coef @ self.vectors                                             # pass 2
        d += self.vectors.dtype.type(r_g) * g
        return d

    def propose(self, x: np.ndarray, x_new: np.ndarray, g: np.ndarray, g_new: np.ndarray,
                damping: float) -> None:
        """Write ``s = x' - x``, ``y = g' - g + damping s`` into the spare slot and keep the pair
        if ``s.y > 0`` (finite), evicting the oldest past ``memory`` pairs."""
        k = self.spare
        s, y = self.vectors[2 * k], self.vectors[2 * k + 1]
        np.subtract(x_new, x, out=s)
        np.subtract(g_new, g, out=y)
        if damping:
            y += y.dtype.type(damping) * s
        ydots = (self.vectors @ y).astype(np.float64)                       # pass 3: s_j.y, y_j.y
        sy = ydots[2 * k]
        if not (sy > 0 and np.isfinite(sy)):
            return
        # the recursion reads s_i.y_j only for i older than j (two_loop_coefficients): the new s
        # needs no dot products with the older y (zeros keep the unread entries finite)
        self.sy[k, :], self.sy[:, k] = 0.0, ydots[0::2]
        self.yy[:, k] = self.yy[k, :] = ydots[1::2]
        self.sy[k, k], self.yy[k, k] = sy, ydots[2 * k + 1]
        self.order.append(k)
        if len(self.order) > self.memory:
            self.spare = self.order.pop(0)
        else:
            self.spare = len(self.order)


def two_loop_coefficients(s_g: np.ndarray, y_g: np.ndarray, sy: np.ndarray, yy: np.ndarray):
    """The two-loop recursion on coefficients: ``H g = r_g g + sum_i (r_s[i] s_i + r_y[i] y_i)``.

    ``s_g[i] = s_i.g``, ``y_g[i] = y_i.g``, ``sy[i, j] = s_i.y_j``, ``yy[i, j] = y_i.y_j``
    over the kept pairs, oldest first; ``gamma = mean_i s_i.y_i / y_i.y_i`` (oLBFGS).
    """
    k = s_g.size
    rho = 1.0 / np.diag(sy)
    q_g, q_y = 1.0, np.zeros(k)                      # q = q_g g + sum_j q_y[j] y_j
    a = np.zeros(k)
    for i in range(k - 1, -1, -1):
        a[i] = rho[i] * (q_g * s_g[i] + sy[i] @ q_y)
        q_y[i] -= a[i]
    gamma = float(np.mean(np.diag(sy) / np.diag(yy)))
    r_g, r_y, r_s = gamma * q_g, gamma * q_y, np.zeros(k)   # r = r_g g + sum (r_s s + r_y y)
    for i in range(k):
        b = rho[i] * (r_g * y_g[i] + yy[i] @ r_y + sy[:, i] @ r_s)
        r_s[i] += a[i] - b
    return r_g, r_s, r_y


class OLBFGSState(NamedTuple):
    t: int
    history: PairHistory | None   # the curvature pairs (updated in place), None before the first step
    scale: float = 1.0     # 1 / L, the harness's curvature scale


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
        return OLBFGSState(0, None, step_scale(info))

    def step(self, x, state: OLBFGSState, oracle, rng):
        idx = oracle.next_batch(self.batch_size)
        _, g = oracle.value_and_grad(x, idx)
        history = state.history
        if history is None:
            history = PairHistory(self.memory, g.size, g.dtype)
        d = history.direction(g.ravel(), self.epsilon * state.scale)
        x_new = x - annealed(self.lr, self.decay, state.t) * d.reshape(g.shape)
        _, g_new = oracle.value_and_grad(x_new, idx)
        history.propose(np.asarray(x).ravel(), x_new.ravel(), g.ravel(), np.asarray(g_new).ravel(), self.damping)
        return x_new, OLBFGSState(state.t + 1, history, state.scale)
