"""The paper's density prior (Section 3, after Eq. 5).

Per voxel, an exponential for non-negative density and a generalised normal
of order 3 for negative density:

.. math::

    -\\log p(\\mathcal V) = \\sum_v \\rho(\\mathcal V_v) + \\text{const},\\qquad
    \\rho(x) = \\begin{cases} \\lambda_+ x & x \\ge 0 \\\\ \\lambda_- |x|^3 & x < 0 \\end{cases}

Gradient ``lambda_+`` (x >= 0) / ``-3 lambda_- x^2`` (x < 0); Hessian diagonal
``0`` / ``6 lambda_- |x|``.  At ``x = 0`` the right derivative is used.
Value and gradient are one fused pass, accumulated into the likelihood's
gradient (numpy's ``where`` version took 38 ms at paper scale).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True, fastmath=True)
def _accumulate(flat, lam_plus, lam_minus, scale, grad):
    """Return ``sum rho(flat)`` (float64) and add ``scale * rho'(flat)`` to ``grad``.

    One serial pass: on this 2-core machine it runs 3-5x faster than numba's
    parallel loop and numpy's ``where`` expressions (memory bound, and the
    branch-free min/max form vectorises).
    """
    acc = 0.0
    g_plus = grad.dtype.type(scale * lam_plus)
    g_minus = grad.dtype.type(3 * scale * lam_minus)
    zero = flat.dtype.type(0)
    for i in range(flat.size):
        v = flat[i]
        neg = min(v, zero)
        acc += lam_plus * max(v, zero) - lam_minus * neg * neg * neg
        grad[i] += g_plus * (v >= zero) - g_minus * neg * neg
    return acc


@dataclass(frozen=True)
class DensityPrior:
    """``rho`` summed over voxels; ``lambda_plus``, ``lambda_minus`` per paper Sec. 4."""

    lambda_plus: float
    lambda_minus: float

    def describe(self) -> dict:
        return {"lambda_plus": self.lambda_plus, "lambda_minus": self.lambda_minus}

    def value_and_accumulate_grad(self, x: np.ndarray, grad: np.ndarray, scale: float = 1.0) -> float:
        """``rho(x)``, adding ``scale * grad rho(x)`` into ``grad`` in place (one fused pass)."""
        if grad.shape != x.shape or not grad.flags.c_contiguous:
            raise ValueError("grad must be a C-contiguous array shaped like x")
        return float(_accumulate(np.ascontiguousarray(x).ravel(), self.lambda_plus, self.lambda_minus,
                                 scale, grad.reshape(-1)))

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        grad = np.zeros_like(x)
        return self.value_and_accumulate_grad(x, grad), grad

    def value(self, x: np.ndarray) -> float:
        return self.value_and_grad(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.value_and_grad(x)[1]

    def hess_diag(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x.dtype.type(0), x.dtype.type(-6 * self.lambda_minus) * x)
