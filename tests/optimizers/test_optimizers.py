"""Conformance of every built-in optimizer, exact cost accounting, plug-ins."""
import numpy as np
import pytest

from optimizers import BUILTIN, ORACLE_CALLS, PAPER_SEVEN, OptimizerInfo, available, get_optimizer, needs
from optimizers.testing import QuadraticOracle

# Capability flags, not names: optional dependencies are tested on their own (test_torch_adapter),
# and the quadratic oracle runs only the optimizers whose oracle calls it answers.
ALL = sorted(n for n, cls in BUILTIN.items() if not getattr(cls, "requires", ()))
ON_QUADRATIC = [n for n in ALL if needs(BUILTIN[n]) <= QuadraticOracle.provides]


def _run(opt, oracle, x, seed=0, steps=None):
    rng = np.random.default_rng(seed)
    state = opt.init(x.copy(), OptimizerInfo(oracle.n_train, oracle.shape, oracle.budget), rng)
    n = 0
    from problems import BudgetExhausted
    while steps is None or n < steps:
        try:
            x, state = opt.step(x, state, oracle, rng)
        except BudgetExhausted:
            break
        n += 1
    return x, n


def _train_objective(problem, x):
    """Full-training-set objective, evaluated outside the optimizer's budget."""
    o = problem.oracle()
    return np.mean([o.value(x, np.arange(s, min(s + 200, o.n_train))) for s in range(0, o.n_train, 200)])


def test_paper_and_extra_optimizers_installed():
    names = set(available())
    assert set(PAPER_SEVEN) <= names
    assert {"adam", "sagd", "hutchinson-sgd", "em", "projection-matching"} <= names


@pytest.mark.parametrize("name", ALL)
def test_reduces_training_objective_on_tiny(tiny, name):
    x0 = tiny.initial_density(0)
    budget = 40 * tiny.n_train if name == "hessian-free" else 3 * tiny.n_train
    x, steps = _run(get_optimizer(name), tiny.oracle(budget=budget), x0)
    assert steps >= 1 and np.isfinite(x).all()
    assert _train_objective(tiny, x) < _train_objective(tiny, x0) - 0.05


@pytest.mark.parametrize("name", ON_QUADRATIC)
def test_reaches_minimiser_of_convex_quadratic(name):
    settings = {"sgd": dict(lr=0.1), "momentum": dict(lr=0.02), "nesterov": dict(lr=0.02),
                "adagrad": dict(lr=0.5), "adam": dict(lr=0.05), "tonga": dict(lr=0.1, reg=10.0),
                "olbfgs": dict(lr=0.5), "hessian-free": dict(damping=1e-3), "sagd": dict(lr=0.03),
                "hutchinson-sgd": dict()}[name]
    oracle = QuadraticOracle()
    x, _ = _run(get_optimizer(name, batch_size=8, **settings), oracle, np.zeros(oracle.shape), steps=4000)
    assert np.abs(x - oracle.minimiser).max() < 1e-3


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_fixed_seed(tiny, name):
    budget = 4000 if name == "hessian-free" else 400
    runs = [_run(get_optimizer(name), tiny.oracle(budget=budget), tiny.initial_density(0), seed=3)[0]
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


class _Recorder:
    """Any oracle, recording which of its calls are used."""

    def __init__(self, oracle):
        self._oracle, self.used = oracle, set()

    def __getattr__(self, attr):
        if attr in ORACLE_CALLS:
            self.used.add(attr)
        return getattr(self._oracle, attr)


@pytest.mark.parametrize("name", ALL)
def test_needs_flag_is_exactly_the_calls_made(tiny, name):
    """The declared `needs` is what step() calls: a missing flag would let a test or the harness
    hand the optimizer an oracle it cannot use, an extra one would exclude it needlessly."""
    oracle = _Recorder(tiny.oracle(budget=8000))
    _run(get_optimizer(name), oracle, tiny.initial_density(0), steps=3)
    assert oracle.used == needs(BUILTIN[name])


def test_missing_optional_package_is_a_clear_error(monkeypatch):
    import optimizers.base as base
    real = base.importlib.util.find_spec
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda m: None if m == "torch" else real(m))
    with pytest.raises(ValueError, match="optional package.*torch"):
        get_optimizer("torch")


class SpyOracle(QuadraticOracle):
    """Counts calls by kind (and images per call)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = {"value": 0, "value_and_grad": 0, "hvp": 0}

    def value(self, x, idx):
        self.calls["value"] += len(idx)
        return super().value(x, idx)

    def value_and_grad(self, x, idx):
        self.calls["value_and_grad"] += len(idx)
        return super().value_and_grad(x, idx)

    def hvp(self, x, v, idx):
        self.calls["hvp"] += len(idx)
        return super().hvp(x, v, idx)


def test_olbfgs_charges_two_gradients_per_image():
    o = SpyOracle()
    _run(get_optimizer("olbfgs", batch_size=8), o, np.zeros(o.shape), steps=7)
    assert o.evals == 7 * 2 * 8


def test_hessian_free_charges_gradient_and_cg_products():
    o = SpyOracle()
    _run(get_optimizer("hessian-free", batch_size=8, cg_iterations=5, damping=1.0), o, np.zeros(o.shape), steps=3)
    # first step: 1 gradient + 5 products; later steps warm-start: + 1 product for the initial residual
    assert o.evals == 8 * (1 + 2 * 5) + 2 * 8 * (1 + 2 * 6)
    assert o.calls["hvp"] == 8 * (5 + 6 + 6)


def test_sagd_charges_visited_blocks():
    o = SpyOracle(n_train=64)
    opt = get_optimizer("sagd", batch_size=8)
    rng = np.random.default_rng(0)
    state = opt.init(np.zeros(o.shape), OptimizerInfo(64, o.shape, None), rng)
    assert len(state.blocks) == 8 and sum(len(b) for b in state.blocks) == 64
    x = np.zeros(o.shape)
    for _ in range(5):
        x, state = opt.step(x, state, o, rng)
    assert o.evals == 5 * 8


def test_hutchinson_charges_probe_gradient_and_line_search():
    o = SpyOracle()
    _run(get_optimizer("hutchinson-sgd", batch_size=8), o, np.zeros(o.shape), steps=6)
    assert o.calls["hvp"] == 6 * 8 and o.calls["value_and_grad"] == 6 * 8
    assert o.evals == 6 * 8 * (2 + 1) + 0.5 * o.calls["value"]
    assert o.calls["value"] >= 6 * 8


def test_em_costs_one_epoch_per_iteration(tiny):
    o = tiny.oracle()
    _run(get_optimizer("em"), o, tiny.initial_density(0), steps=2)
    assert o.evals == 2 * tiny.n_train


def test_projection_matching_uses_hard_assignments(tiny):
    """A hard E-step puts each image's whole weight on one pose: sum of weights = number of images."""
    o = tiny.oracle()
    x = tiny.initial_density(0)
    soft, hard = o.expectation(x, np.arange(50)), o.expectation(x, np.arange(50), hard=True)
    assert soft.count == hard.count == 50
    assert not np.allclose(soft.zq, hard.zq)
    n_nonzero_rows = (np.abs(hard.zq).sum(axis=1) > 0).sum()
    assert n_nonzero_rows <= 50 < (np.abs(soft.zq).sum(axis=1) > 0).sum()


def test_entry_point_plugin(tiny, tmp_path, monkeypatch):
    (tmp_path / "cryoopt_demo_plugin.py").write_text(
        "from optimizers.sgd import SGD\n"
        "class Demo(SGD):\n"
        "    name = 'demo-plugin'\n")
    dist = tmp_path / "cryoopt_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cryoopt-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cryoopt.optimizers]\ndemo-plugin = cryoopt_demo_plugin:Demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "demo-plugin" in available()
    from bench.run.runner import run
    res = run(tiny, "demo-plugin", budget=200, results_dir=tmp_path / "res", progress=False)
    assert res.status == "finished"


def test_bad_optimizer_specs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer("no-such-thing")
    with pytest.raises(ValueError, match="no hyperparameter 'learning_rate'.*lr"):
        get_optimizer("sgd", learning_rate=1)
    bad = tmp_path / "bad.py"
    bad.write_text("class NoStep:\n    name = 'x'\n    def init(self, x0, info, rng): return 0\n")
    with pytest.raises(TypeError, match="no step"):
        get_optimizer(f"{bad}:NoStep")
    with pytest.raises(ValueError, match="has no class"):
        get_optimizer(f"{bad}:Missing")


def test_torch_adapter(tiny):
    pytest.importorskip("torch", reason="PyTorch not installed (optional extra)")
    x, steps = _run(get_optimizer("torch", optimizer="SGD", lr=1.0), tiny.oracle(budget=800), tiny.initial_density(0))
    assert steps == 8 and _train_objective(tiny, x) < _train_objective(tiny, tiny.initial_density(0))
