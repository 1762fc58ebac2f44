"""One step of each built-in optimizer (speed) and the test NLL each reaches (quality)."""
import numpy as np

from optimizers import BUILTIN

from .common import problem

# Every built-in without optional dependencies (capability flag `requires`), in registry order.
NAMES = [n for n, cls in BUILTIN.items() if not getattr(cls, "requires", ())]


class OptimizerStep:
    params = NAMES
    param_names = ["optimizer"]
    timeout = 300

    def setup(self, name):
        from optimizers import OptimizerInfo, get_optimizer
        self.problem = problem("small")
        self.oracle = self.problem.oracle()
        self.opt = get_optimizer(name)
        self.x = self.problem.initial_density(0)
        self.rng = np.random.default_rng(0)
        self.state = self.opt.init(self.x, OptimizerInfo(self.oracle.n_train, self.oracle.shape, None), self.rng)
        self.opt.step(self.x, self.state, self.oracle, self.rng)      # warm-up

    def time_step(self, name):
        self.opt.step(self.x, self.state, self.oracle, self.rng)


class OptimizerQuality:
    """Held-out test NLL after a fixed budget (3 epochs of the tiny problem, seed 0, defaults)."""

    params = NAMES
    param_names = ["optimizer"]
    timeout = 300
    unit = "test NLL (nats per image)"

    def setup_cache(self):
        import tempfile
        from bench.run.runner import run
        prob = problem("tiny")
        out = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in NAMES:
                res = run(prob, name, budget="3epochs", seed=0, results_dir=tmp, progress=False, compare_truth=False)
                # a run that made no step (hessian-free at tiny) or failed has no quality: nan, not its start
                ok = res.status == "finished" and res.final_test_nll is not None
                out[name] = res.final_test_nll if ok else float("nan")
        return out

    def track_test_nll(self, cache, name):
        return cache[name]
