"""The counting oracle: the only door from an optimizer to the objective.

Training objective on a minibatch ``B`` of the ``K`` training images (the
mean form of paper Eq. 6):

.. math:: f_B(x) = \\frac{1}{|B|}\\sum_{i\\in B} \\mathrm{NLL}_i(x) + \\frac{1}{K}\\,\\rho(x)

Every call validates its inputs, charges its cost before doing the work,
refuses (``BudgetExhausted``) work that would exceed the budget, and returns
fresh arrays.  The oracle is built from the training images only; it holds no
reference to the problem or to the held-out images.
"""
from __future__ import annotations


import numpy as np
from scipy.optimize import minimize

from .model.marginal import MarginalLikelihood
from .model.prior import DensityPrior
from .protocol import (COST_EXPECTATION, COST_GRADIENT, COST_HVP, COST_VALUE, BudgetExhausted,
                       EStepStatistics, NonFiniteInput, OracleInputError)


class CountingOracle:
    """Counted access to ``f_B`` and its derivatives over the training images.

    Parameters
    ----------
    name : str
        Problem name used in error messages.
    likelihood : MarginalLikelihood or KnownPoseLikelihood
        The evaluator; a batch is ``likelihood.prepare(images[idx], ctf[idx], *(p[idx] for p in poses))``.
    prior : DensityPrior or GaussianPrior
    images, ctf : ndarray, shape (K, D)
        Band coefficients and CTF values of the training images.
    budget : float or None
        Maximum cost in per-image gradient evaluations (None: unlimited).
    order_seed : int
        Seed of the fixed shuffled batch order (the same for every optimizer).
    poses : tuple of ndarray
        Further per-image arrays the likelihood's batches need: the known
        rotations ``(K, 3, 3)`` for the known-pose likelihood, none for the
        marginal one.
    """

    last_value: float | None
    """The batch objective of the most recent value / value_and_grad call (for run records)."""

    def __init__(self, name: str, likelihood: MarginalLikelihood, prior: DensityPrior,
                 images: np.ndarray, ctf: np.ndarray, budget: float | None, order_seed: int,
                 poses: tuple[np.ndarray, ...] = ()):
        if budget is not None and not budget > 0:
            raise OracleInputError(f"{name}: budget must be positive or None, got {budget}")
        self._name = name
        self._lik = likelihood
        self._prior = prior
        self._images = images
        self._ctf = ctf
        self._poses = tuple(poses)
        self._budget = None if budget is None else float(budget)
        self._evals = 0.0
        self.last_value: float | None = None
        self._order_seed = int(order_seed)
        self._epoch = 0
        self._position = 0
        self._order = self._epoch_order(0)
        self.n_train = int(images.shape[0])
        self.shape = tuple(getattr(likelihood, "shape", (likelihood.n,) * 3))
        self.dtype = likelihood.dtype

    # ------------------------------------------------------------ accounting
    @property
    def evals(self) -> float:
        """Cost spent so far, in per-image gradient evaluations."""
        return self._evals

    @property
    def budget(self) -> float | None:
        return self._budget

    @property
    def remaining(self) -> float:
        return np.inf if self._budget is None else self._budget - self._evals

    def _charge(self, per_image: float, n: int, what: str) -> None:
        cost = per_image * n
        if self._budget is not None and self._evals + cost > self._budget + 1e-9:
            raise BudgetExhausted(
                f"{self._name}: {what} on {n} images costs {cost:g} but only "
                f"{self._budget - self._evals:g} of the budget {self._budget:g} is left")
        self._evals += cost

    # ------------------------------------------------------------ validation
    def _check_x(self, x, what: str = "x") -> np.ndarray:
        arr = np.asarray(x)
        if arr.shape != self.shape:
            raise OracleInputError(f"{self._name}: {what} has shape {arr.shape}, expected {self.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise OracleInputError(f"{self._name}: {what} has dtype {arr.dtype}, expected real numbers")
        # Not copied when already in the working dtype: the oracle keeps no reference.
        out = np.ascontiguousarray(arr, dtype=self.dtype)
        if not np.isfinite(out).all():
            raise NonFiniteInput(f"{self._name}: {what} contains NaN or infinite values "
                                   f"({int((~np.isfinite(out)).sum())} voxels)")
        return out

    def _check_idx(self, idx) -> np.ndarray:
        arr = np.asarray(idx)
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim != 1 or arr.size == 0:
            raise OracleInputError(f"{self._name}: idx must be a non-empty 1-D array of image indices")
        if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            raise OracleInputError(f"{self._name}: idx has dtype {arr.dtype}, expected integers")
        if arr.min() < 0 or arr.max() >= self.n_train:
            raise OracleInputError(
                f"{self._name}: idx out of range [0, {self.n_train}) (got {arr.min()}..{arr.max()}); "
                f"only the training images are accessible, held-out test images never are")
        return arr.astype(np.int64)

    def _terms(self, idx: np.ndarray):
        return self._lik.prepare(self._images[idx], self._ctf[idx], *(p[idx] for p in self._poses))

    # --------------------------------------------------------------- queries
    def value(self, x, idx) -> float:
        """``f_B(x)`` (cost 0.5 per image)."""
        x, idx = self._check_x(x), self._check_idx(idx)
        self._charge(COST_VALUE, idx.size, "value")
        if hasattr(self._lik, "value_with_prior"):          # device likelihoods: prior in the same pass
            nll, prior_value = self._lik.value_with_prior(x, self._terms(idx), self._prior)
        else:
            nll, prior_value = self._lik.nll(x, self._terms(idx)), self._prior.value(x)
        self.last_value = float(nll.mean() + prior_value / self.n_train)
        return self.last_value

    def value_and_grad(self, x, idx) -> tuple[float, np.ndarray]:
        """``f_B(x)`` and its gradient (cost 1 per image)."""
        x, idx = self._check_x(x), self._check_idx(idx)
        self._charge(COST_GRADIENT, idx.size, "value_and_grad")
        if hasattr(self._lik, "grad_with_prior"):
            nll, prior_value, grad = self._lik.grad_with_prior(x, self._terms(idx), self._prior, 1.0 / self.n_train)
        else:
            nll, grad = self._lik.nll_and_grad(x, self._terms(idx))
            prior_value = self._prior.value_and_accumulate_grad(x, grad, 1.0 / self.n_train)
        self.last_value = float(nll.mean() + prior_value / self.n_train)
        return self.last_value, grad

    def hvp(self, x, v, idx) -> np.ndarray:
        """Hessian of ``f_B`` at ``x`` times ``v`` (cost 2 per image)."""
        x, v, idx = self._check_x(x), self._check_x(v, "v"), self._check_idx(idx)
        self._charge(COST_HVP, idx.size, "hvp")
        if hasattr(self._lik, "hvp_with_prior"):
            return self._lik.hvp_with_prior(x, v, self._terms(idx), self._prior, 1.0 / self.n_train)
        out = self._lik.hvp(x, v, self._terms(idx))
        out += self._prior.hess_diag(x) * v / self.dtype.type(self.n_train)
        return out

    def expectation(self, x, idx, hard: bool = False) -> EStepStatistics:
        """Posterior-weighted back-projection sums of a batch, for EM-type baselines (cost 1 per image).

        Returns :class:`EStepStatistics`, which add up over batches; give the
        sum to :meth:`m_step`.  ``hard=True`` assigns each image to its most
        probable pose (projection matching).
        """
        self._need_marginal("expectation()")
        x, idx = self._check_x(x), self._check_idx(idx)
        self._charge(COST_EXPECTATION, idx.size, "expectation")
        za, zq = self._lik.expectation(x, self._terms(idx), hard=hard)
        return EStepStatistics(za, zq, int(idx.size))

    def m_step(self, stats: EStepStatistics, x0, max_iter: int = 30) -> np.ndarray:
        """Maximise the expected complete-data log posterior for fixed E-step statistics.

        Minimises ``Q(x) + rho(x) / K`` (:meth:`MarginalLikelihood.complete_data_objective`,
        a convex problem) by L-BFGS-B from ``x0``.  It touches no image, so it
        costs nothing in the oracle's currency; the E-step that produced
        ``stats`` was charged.
        """
        self._need_marginal("m_step()")
        if not isinstance(stats, EStepStatistics) or stats.count < 1:
            raise OracleInputError(f"{self._name}: m_step needs EStepStatistics from expectation()")
        x0 = self._check_x(x0, "x0")

        def fun(flat):
            x = flat.reshape(self.shape).astype(self.dtype)
            q, grad = self._lik.complete_data_objective(x, stats.za, stats.zq, stats.count)
            prior = self._prior.value_and_accumulate_grad(x, grad, 1.0 / self.n_train)
            return q + prior / self.n_train, grad.ravel().astype(np.float64)

        res = minimize(fun, x0.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                       options={"maxiter": int(max_iter)})
        return res.x.reshape(self.shape).astype(self.dtype)

    def _need_marginal(self, what: str) -> None:
        if not getattr(self._lik, "marginalises", True):
            raise OracleInputError(f"{self._name}: {what} needs unknown poses; this problem has known poses")

    # ---------------------------------------------------------- batch order
    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self._order_seed, epoch]).permutation(len(self._images))

    def next_batch(self, size: int) -> np.ndarray:
        """The next ``size`` indices of the fixed shuffled order (identical for every optimizer).

        Each epoch is a fresh permutation seeded by ``(order_seed, epoch)``; a
        batch that crosses an epoch boundary continues into the next one.
        Drawing indices costs nothing; evaluating them does.
        """
        size = int(size)
        if size < 1:
            raise OracleInputError(f"{self._name}: batch size must be >= 1, got {size}")
        out = []
        while size > 0:
            take = min(size, self.n_train - self._position)
            out.append(self._order[self._position:self._position + take])
            self._position += take
            size -= take
            if self._position == self.n_train:
                self._epoch += 1
                self._position = 0
                self._order = self._epoch_order(self._epoch)
        return np.concatenate(out).copy()

    def __repr__(self) -> str:
        return (f"CountingOracle({self._name}, n_train={self.n_train}, evals={self._evals:g}, "
                f"budget={self._budget})")
