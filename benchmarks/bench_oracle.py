"""Oracle speed and memory at batch 100 (value, value_and_grad, hvp).

The paper scale is benchmarked on the paper's exact objective configuration
(128 px, 10% Nyquist, 23,600 poses) with random band data, so set-up does
not need the 3.3 GB simulated stack; timing does not depend on the values.
The small scale uses the real cached problem.
"""
import numpy as np

from .common import problem


class _Paper:
    """A counting oracle with the paper scale's likelihood and synthetic band data."""

    def __init__(self):
        from problems.model.grids import make_band
        from problems.model.marginal import MarginalLikelihood
        from problems.oracle import CountingOracle
        from problems.model.poses import make_quadrature
        from problems.model.prior import DensityPrior
        r = 0.10 * 128 / 2
        band = make_band(r)
        lik = MarginalLikelihood(128, band, make_quadrature(r), 1.0)
        rng = np.random.default_rng(0)
        n = 1000
        images = (rng.standard_normal((n, band.size)) + 1j * rng.standard_normal((n, band.size))).astype(np.complex64)
        ctf = rng.uniform(-1, 1, (n, band.size)).astype(np.float32)
        self.oracle = CountingOracle("paper-bench", lik, DensityPrior(1e-4, 1e-4), images, ctf, None, 0)
        self.x = rng.standard_normal((128,) * 3).astype(np.float32) * 0.01


class Oracle:
    params = ["small", "paper"]
    param_names = ["scale"]
    timeout = 300

    def setup(self, scale):
        if scale == "paper":
            p = _Paper()
            self.oracle, self.x = p.oracle, p.x
        else:
            prob = problem(scale)
            self.oracle, self.x = prob.oracle(), prob.initial_density(0)
        self.idx = np.arange(100)
        self.v = np.ones_like(self.x)
        self.oracle.value_and_grad(self.x, self.idx)          # compile / warm caches

    def time_value(self, scale):
        self.oracle.value(self.x, self.idx)

    def time_value_and_grad(self, scale):
        self.oracle.value_and_grad(self.x, self.idx)

    def time_hvp(self, scale):
        self.oracle.hvp(self.x, self.v, self.idx)


class OracleMemory:
    timeout = 300

    def setup(self):
        p = _Paper()
        self.oracle, self.x = p.oracle, p.x
        self.idx = np.arange(100)

    def peakmem_value_and_grad_paper(self):
        self.oracle.value_and_grad(self.x, self.idx)
