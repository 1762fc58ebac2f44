"""A problem: fixed objective + training images (behind an oracle) + held-out test images."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .data.cache import BandData
from .data.phantoms import random_spheres
from .data.units import resolution_angstrom
from .model.devices import DeviceRows, array_module, check_device
from .model.likelihoods import INTERPOLATION, MarginalPart
from .model.prior import DensityPrior
from .oracle import CountingOracle


def problem_label(problem) -> str:
    """``"<name>-<scale>"`` (``"custom"`` without a scale): a problem's results folder and display name.

    The one place a label is built (runner, submissions, reference optimum, oracle messages).
    """
    return f"{problem.name}-{problem.metadata.get('scale', 'custom')}"


def marginal_parts(box_size: int, r_max: float, sigma: float, lambda_plus: float, lambda_minus: float,
                   shift_extent: float, shift_sigma: float) -> dict:
    """``model=`` and ``prior=`` of an ab-initio problem: the marginal likelihood and the paper's prior."""
    return {"model": MarginalPart(box_size, r_max, sigma, shift_extent, shift_sigma),
            "prior": DensityPrior(lambda_plus, lambda_minus)}


class Problem:
    """MAP estimation of a density from particle images (paper Eq. 6, mean form), any family.

    Use :func:`problems.load_problem` to build one.  Public surface:
    ``oracle(budget)``, ``test_nll(x)``, ``score_nll(x)``, ``initial_density(seed)``,
    ``validation_split(n)``, ``likelihood(dtype)``, ``ground_truth``, ``metadata``,
    ``n_train``, ``n_score``, ``shape``.

    The family's likelihood is a part (:mod:`problems.model.likelihoods`):
    :class:`~problems.model.likelihoods.MarginalPart` (unknown poses,
    marginalised; the ab-initio problems) or
    :class:`~problems.model.likelihoods.KnownPosePart` (refinement at known
    poses, which also needs ``rotations``, one RELION matrix per image); the
    prior is a part too (:class:`problems.model.prior.DensityPrior` or
    :class:`problems.model.known_pose.GaussianPrior`).  Nothing outside this
    class needs to know which.

    ``device`` (:meth:`use_device`) says where a marginal objective is
    evaluated: ``"cpu"`` (the numba path) or an array-module device
    (``"numpy"``, ``"cuda"``: :mod:`problems.model.xp_marginal`), whose
    training, test and scoring images stay on the device.  The objective is
    the same on every device, so it is not part of the metadata or the hash.
    """

    def __init__(self, *, name: str, version: int, fixed: dict, data: BandData,
                 test_indices: np.ndarray, model, prior, order_seed: int,
                 ground_truth: np.ndarray | None = None, score_indices: np.ndarray | None = None,
                 rotations: np.ndarray | None = None):
        if model.needs_poses != (rotations is not None):
            raise ValueError(f"{name}: a {model.kind} likelihood needs rotations" if model.needs_poses
                             else f"{name}: a {model.kind} likelihood takes no rotations")
        self._init_args = dict(name=name, version=version, fixed=fixed, model=model, prior=prior,
                               order_seed=order_seed)
        self._pixel_size = data.pixel_size
        self.name = name
        self.model = model
        self.box_size = data.box_size
        self.band = model.band
        self.sigma = model.sigma
        self.prior = prior
        self.ground_truth = None if ground_truth is None else ground_truth.copy()
        test_mask = np.zeros(data.images.shape[0], dtype=bool)
        test_mask[test_indices] = True
        # The scoring split: further held-out images for the harness's rankings (never trained on).
        score_mask = np.zeros_like(test_mask)
        if score_indices is not None:
            score_mask[score_indices] = True
            if np.any(score_mask & test_mask):
                raise ValueError(f"{name}: scoring and test images overlap")
        train_mask = ~(test_mask | score_mask)
        per_image = (data.images, data.ctf) + (() if rotations is None else (rotations,))

        def split(mask):   # (images, ctf[, rotations]) of one split
            return tuple(np.ascontiguousarray(a[mask]) for a in per_image)

        self._train, self._test, self._score = split(train_mask), split(test_mask), split(score_mask)
        self._order_seed = int(order_seed)
        self._likelihoods: dict = {}
        self.device = "cpu"
        self._resident: dict[str, tuple] = {}
        digest = hashlib.sha256()
        for arr in (*self._train[:2], *self._test[:2], *(self._score[:2] if score_mask.any() else ())):
            digest.update(memoryview(np.ascontiguousarray(arr)).cast("B"))   # no copy (3 GB at paper-scale refine)
        if rotations is not None:
            digest.update(np.ascontiguousarray(rotations).tobytes())
        self.metadata = {
            "problem": name, "version": version, **fixed,
            "box_size": self.box_size, "pixel_size_angstrom": data.pixel_size,
            "r_max": self.band.r_max, "band_coefficients_half_plane": self.band.size,
            "resolution_angstrom": resolution_angstrom(self.band.r_max, self.box_size, data.pixel_size),
            **model.metadata(), **prior.describe(), "interpolation": getattr(model, "interpolation", INTERPOLATION),
            "n_train": int(self._train[0].shape[0]), "n_test": int(self._test[0].shape[0]),
            **({"n_score": int(score_mask.sum())} if score_mask.any() else {}),
            "batch_order_seed": self._order_seed,
        }
        digest.update(json.dumps(self.metadata, sort_keys=True, default=str).encode())
        self.metadata["content_hash"] = digest.hexdigest()

    @property
    def quadrature(self):
        """The pose quadrature (marginal likelihood only; ``AttributeError`` at known poses)."""
        return self.model.quadrature

    @property
    def n_train(self) -> int:
        return int(self._train[0].shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The variable's shape: the real volume ``(N, N, N)``, or the part's own (the Fourier volume's flat real view)."""
        return tuple(getattr(self.model, "shape", (self.box_size,) * 3))

    def use_device(self, device: str) -> "Problem":
        """Evaluate on ``device`` from now on (``"cpu"``, ``"numpy"`` or ``"cuda"``); returns ``self``.

        ``"cuda"`` without CuPy or a GPU raises one ``RuntimeError`` here, before any work;
        known-pose problems run on the CPU only (``ValueError``).
        """
        if check_device(device) != "cpu":
            if self.model.kind != "marginal":
                raise ValueError(f"{self.name}: a {self.model.kind} likelihood runs on the CPU only (device='cpu')")
            array_module(device)
        if device != self.device:
            self.device, self._likelihoods, self._resident = device, {}, {}
        return self

    def likelihood(self, dtype=np.float32):
        """The (cached) likelihood evaluator in the given precision on the problem's device (it holds no image)."""
        key = np.dtype(dtype)
        if key not in self._likelihoods:
            self._likelihoods[key] = (self.model.build(key) if self.device == "cpu"
                                      else self.model.build(key, device=self.device))
        return self._likelihoods[key]

    def _resident_split(self, split: str) -> tuple:
        """``split_arrays(split)``, moved to the device once (the arrays themselves on the CPU)."""
        if self.device == "cpu":
            return self.split_arrays(split)
        if split not in self._resident:
            xp = array_module(self.device)
            self._resident[split] = tuple(DeviceRows(xp, a) for a in self.split_arrays(split))
        return self._resident[split]

    def split_arrays(self, split: str = "train") -> tuple[np.ndarray, ...]:
        """``(images, ctf[, rotations])`` of ``"train"``, ``"test"`` or ``"score"`` (harness only)."""
        return {"train": self._train, "test": self._test, "score": self._score}[split]

    def oracle(self, budget: float | None = None, dtype=np.float32) -> CountingOracle:
        """A fresh counting oracle over the training images (float64 for derivative checks)."""
        images, ctf = self._resident_split("train")[:2]
        return CountingOracle(problem_label(self), self.likelihood(dtype), self.prior, images, ctf,
                              budget, self._order_seed, poses=self._train[2:])

    def test_nll(self, x: np.ndarray, batch: int = 100, per_image: bool = False):
        """Mean NLL of the held-out images at ``x`` (harness only; no prior, never charged).

        ``per_image=True`` returns the array of the images' NLLs instead (for paired statistics).
        """
        return self._heldout_nll("test", x, batch, per_image, "test_nll")

    @property
    def n_score(self) -> int:
        return int(self._score[0].shape[0])

    def score_nll(self, x: np.ndarray, batch: int = 100, per_image: bool = False):
        """Mean NLL of the scoring split at ``x``: held-out images beyond the paper's test set,
        for rankings that can be resolved (harness only; ``ValueError`` if the problem has none)."""
        if self.n_score == 0:
            raise ValueError(f"{self.name}: this problem has no scoring split (n_score = 0)")
        return self._heldout_nll("score", x, batch, per_image, "score_nll")

    def _heldout_nll(self, split, x, batch: int, per_image: bool, what: str):
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.shape or not np.isfinite(x).all():
            raise ValueError(f"{self.name}: {what} needs a finite array of shape {self.shape}")
        lik = self.likelihood()
        split = self._resident_split(split)
        n = split[0].shape[0]
        if self.device != "cpu":                        # on the device: the slices computed once
            values = lik.nll_batches(x, *split[:2], batch).astype(np.float64)
        else:
            values = np.concatenate([lik.nll(x, lik.prepare(*(a[s:s + batch] for a in split)))
                                     for s in range(0, n, batch)]).astype(np.float64)
        return values if per_image else float(values.sum() / n)

    def initial_density(self, seed: int = 0) -> np.ndarray:
        """A random sum of spheres (paper Fig. 5), scaled to the data's band power.

        The scale ``a`` solves ``sum_it c_t (|I_it|^2 - sigma^2) = a^2 P`` over
        (up to) 2000 training images, where ``P`` is the band power the
        spheres predict for them (``model.predicted_power``: slices averaged
        over the quadrature's poses, or at the images' known poses): the
        initial density predicts as much signal as the (training) images
        carry, without looking at the ground truth.
        """
        x0 = random_spheres(self.box_size, np.random.default_rng([seed, 0x5EED]))
        if hasattr(self.model, "from_density"):          # the variable is not the real-space volume
            x0 = self.model.from_density(x0)
        images, ctf, *poses = (a[:2000] for a in self._train)
        c = self.band.multiplicity
        excess = np.sum(c * (np.abs(images) ** 2 - self.sigma**2))
        model = self.model.predicted_power(self.likelihood(), x0, images, ctf, *poses or (None,))
        scale = np.sqrt(max(excess, 0.0) / model) if model > 0 else 1.0
        return (x0 * scale).astype(np.float32)

    def validation_split(self, n_validation: int = 100, seed: int = 0) -> "Problem":
        """A problem for tuning: ``n_validation`` training images become its held-out set.

        The returned problem trains on the remaining training images and its
        ``test_nll`` is the NLL of the validation images, so hyperparameters
        are chosen without ever touching the real test images.
        """
        if not 0 < n_validation < self.n_train:
            raise ValueError(f"{self.name}: n_validation must be in (0, {self.n_train})")
        rng = np.random.default_rng([seed, 0x7A11D])
        chosen = np.sort(rng.choice(self.n_train, n_validation, replace=False))
        args = dict(self._init_args)
        args["name"] = f"{self.name}-validation"
        args["fixed"] = {**args["fixed"], "validation_of": self.metadata["content_hash"],
                         "validation_seed": seed}
        data = BandData(self._train[0], self._train[1], self._pixel_size, self.box_size)
        return Problem(data=data, test_indices=chosen, ground_truth=self.ground_truth,
                       rotations=self._train[2] if len(self._train) > 2 else None, **args).use_device(self.device)

    def __repr__(self) -> str:
        return f"Problem({self.name}, N={self.box_size}, n_train={self.n_train}, {self.model!r})"
