"""The harness's curvature scale: the largest Hessian eigenvalue of the batch objective at ``x0``.

Step sizes that are fixed numbers break across scales: the objective's
curvature grows with the box, the band and the number of poses, so a
learning rate that is safe at 64 px diverges at 128 px.  The harness
therefore measures one number for every run the same way and hands it to
the optimizer in :class:`problems.protocol.OptimizerInfo` as ``curvature``;
built-in optimizers express their step sizes relative to it
(``eta = lr / curvature``: ``lr = 1`` is the step ``1/L`` that gradient
descent on a quadratic with largest eigenvalue ``L`` takes without
overshooting, and ``lr < 2`` is its stability limit).

Measurement (uncharged: a separate, unbudgeted oracle of the same problem,
so the scored oracle's counter and batch order are untouched): ``L`` is the
largest-magnitude eigenvalue of ``H = \\nabla^2 f_B(x_0)`` for the fixed
batch ``B`` of the first ``batch`` training images (by index, not by the
shuffled order), found by ``iterations`` Lanczos steps (:func:`lanczos_extreme`) from a seeded
Gaussian start: the extreme Ritz value of the Krylov space
``span{q, Hq, ..., H^{k-1} q}``, which approaches ``L`` from below.  The same problem and initial density give the
same ``L`` in every run (it is cached by the problem's content hash and the
density's bytes); a tuning run's validation problem (100 training images
fewer) measures its own ``L`` the same way, so a relative learning rate tuned
there transfers to the scored run.
"""
from __future__ import annotations

import hashlib

import numpy as np
from scipy.linalg import eigvalsh_tridiagonal

_CACHE: dict[tuple, float] = {}


def estimate_curvature(problem, x0: np.ndarray, batch: int = 200, iterations: int = 8, seed: int = 0) -> float:
    """Power-iteration estimate of ``max |eig(Hessian of f_B at x0)|`` (see the module docstring).

    Parameters
    ----------
    problem : Problem
        Provides ``oracle(budget=None)`` and ``n_train``.
    x0 : ndarray
        The initial density.
    batch, iterations, seed : int
        Images in the fixed batch, Hessian-vector products, start-vector seed.

    Returns
    -------
    float
        The estimate ``L > 0``.
    """
    x0 = np.ascontiguousarray(x0, dtype=np.float32)
    key = (problem.metadata.get("content_hash"), hashlib.sha256(x0.tobytes()).hexdigest(), batch, iterations, seed)
    if key in _CACHE:
        return _CACHE[key]
    oracle = problem.oracle(budget=None)
    idx = np.arange(min(batch, problem.n_train))
    q = np.random.default_rng([seed, 0xC0A7]).standard_normal(x0.size)
    estimate = lanczos_extreme(lambda v: oracle.hvp(x0, v.reshape(x0.shape).astype(np.float32), idx)
                               .astype(np.float64).ravel(), q, iterations)
    if not (np.isfinite(estimate) and estimate > 0):
        raise ValueError(f"{problem.name}: curvature estimate at x0 is {estimate} (not a positive number)")
    _CACHE[key] = estimate
    return estimate


def lanczos_extreme(matvec, start: np.ndarray, steps: int) -> float:
    """Largest ``|Ritz value|`` after ``steps`` Lanczos steps (full reorthogonalisation).

    The Ritz values of the tridiagonal ``T_k`` interlace the spectrum, so the
    extreme one approaches ``max |eig(H)|`` from inside, much faster than
    power iteration when the top eigenvalues are clustered.
    """
    basis = [start / np.linalg.norm(start)]
    alphas, betas = [], []
    for k in range(steps):
        w = matvec(basis[-1])
        alphas.append(float(basis[-1] @ w))
        for b in basis:                       # full reorthogonalisation: a few vectors only
            w -= (b @ w) * b
        beta = float(np.linalg.norm(w))
        if k == steps - 1 or beta < 1e-12 * abs(alphas[-1]) or not np.isfinite(beta):
            break
        betas.append(beta)
        basis.append(w / beta)
    ritz = eigvalsh_tridiagonal(np.array(alphas), np.array(betas[:len(alphas) - 1]))
    return float(np.max(np.abs(ritz)))
