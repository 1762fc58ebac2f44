"""Oracle speed and memory at batch 100 (value, value_and_grad, hvp), and the shift dimension.

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
        from bench.experiments.perf import random_target
        target = random_target(128, 0.10, n_images=1000, label="paper-bench")
        self.oracle, self.x = target.oracle(), target.x


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


class OracleShifts:
    """The real-data regime: 16% Nyquist with and without shifts at the same rotations.

    ``time_value_and_grad("shifts") / time_value_and_grad("none")`` is the
    cost of the shift dimension per pose-rotation (issue 16's target: <= 10x).
    ``scale`` picks the box: "small" 64 px (shift extent 1: 5 shifts),
    "paper" 128 px (extent 2: 13 shifts), with random band data.
    """

    params = (["small", "paper"], ["none", "shifts"])
    param_names = ["scale", "shifts"]
    timeout = 600

    def setup(self, scale, shifts):
        from bench.experiments.perf import random_target
        box, extent = {"small": (64, 1.0), "paper": (128, 2.0)}[scale]
        target = random_target(box, 0.16, shift_extent=extent if shifts == "shifts" else 0.0, n_images=100)
        self.oracle, self.x = target.oracle(), target.x
        self.idx = np.arange(100)
        self.oracle.value_and_grad(self.x, self.idx)

    def time_value_and_grad(self, scale, shifts):
        self.oracle.value_and_grad(self.x, self.idx)


class OracleDevice:
    """The array-module path (the GPU code, every phase) run with numpy, against the CPU path."""

    params = ["cpu", "numpy"]
    param_names = ["device"]
    timeout = 300

    def setup(self, device):
        from bench.experiments.perf import random_target
        target = random_target(64, 0.16, shift_extent=1.0, n_images=100, device=device)
        self.oracle, self.x = target.oracle(), target.x
        self.idx = np.arange(100)
        self.oracle.value_and_grad(self.x, self.idx)

    def time_value_and_grad(self, device):
        self.oracle.value_and_grad(self.x, self.idx)
