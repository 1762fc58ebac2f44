"""The paper's density prior (Section 3, after Eq. 5).

Per voxel, an exponential for non-negative density and a generalised normal
of order 3 for negative density:

.. math::

    -\\log p(\\mathcal V) = \\sum_v \\rho(\\mathcal V_v) + \\text{const},\\qquad
    \\rho(x) = \\begin{cases} \\lambda_+ x & x \\ge 0 \\\\ \\lambda_- |x|^3 & x < 0 \\end{cases}

Gradient ``lambda_+`` (x >= 0) / ``-3 lambda_- x^2`` (x < 0); Hessian diagonal
``0`` / ``6 lambda_- |x|``.  At ``x = 0`` the right derivative is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DensityPrior:
    """``rho`` summed over voxels; ``lambda_plus``, ``lambda_minus`` per paper Sec. 4."""

    lambda_plus: float
    lambda_minus: float

    def value(self, x: np.ndarray) -> float:
        pos = x >= 0
        return float(self.lambda_plus * np.sum(x, where=pos, dtype=np.float64)
                     + self.lambda_minus * np.sum(np.abs(x) ** 3, where=~pos, dtype=np.float64))

    def grad(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x.dtype.type(self.lambda_plus),
                        x.dtype.type(-3 * self.lambda_minus) * x * x)

    def hess_diag(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x.dtype.type(0), x.dtype.type(-6 * self.lambda_minus) * x)
