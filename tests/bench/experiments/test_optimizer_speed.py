"""``cryoopt bench optimizers`` separates an optimizer's own arithmetic from its oracle time;
``cryoopt bench oracle --against REV`` times another revision in a child process."""
import textwrap

import numpy as np
import pytest

from bench.experiments.optimizer_speed import (TimedOracle, bench_optimizer, default_warmup, one_pass_seconds,
                                               state_arrays)


def test_own_time_is_step_time_minus_oracle_time(tiny, tmp_path):
    plugin = tmp_path / "slow_arith.py"
    plugin.write_text(textwrap.dedent('''
        import time
        from dataclasses import dataclass
        from typing import ClassVar

        @dataclass(frozen=True)
        class SlowArithmetic:
            name: ClassVar[str] = "slow-arithmetic"
            needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
            search_space: ClassVar[dict] = {}
            batch_size: int = 50

            def init(self, x0, info, rng):
                return 0

            def step(self, x, state, oracle, rng):
                _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
                time.sleep(0.03)                      # the optimizer's own work
                return x - 1e-3 * g, state + 1
    '''))
    r = bench_optimizer(tiny, f"{plugin}:SlowArithmetic", steps=4, warmup=1)
    assert r["evals"] == 4 * 50
    assert 30 <= r["own_ms_per_step"] < 30 + r["oracle_ms_per_step"] + 50
    assert r["oracle_ms_per_step"] > 0
    assert r["ms_per_step"] == pytest.approx(r["own_ms_per_step"] + r["oracle_ms_per_step"])


def test_state_floor_counts_olbfgs_history_once(tiny):
    from optimizers import OptimizerInfo, get_optimizer
    opt = get_optimizer("olbfgs")
    x = tiny.initial_density(0)
    rng, oracle = np.random.default_rng(0), tiny.oracle()
    state = opt.init(x.copy(), OptimizerInfo(tiny.n_train, tiny.shape, None, 1.0), rng)
    for _ in range(2):
        x, state = opt.step(x, state, oracle, rng)
    arrays = state_arrays(state)
    history = 2 * (opt.memory + 1) * x.size * 4        # float32 (s, y) pairs, the state's bulk
    total = sum(a.nbytes for a in arrays)
    assert history <= total < 1.2 * history            # found, and views not counted twice
    assert len({id(a) for a in arrays}) == len(arrays)
    assert one_pass_seconds(arrays) > 0 and one_pass_seconds([]) == 0.0


def test_timed_oracle_forwards_and_counts(tiny):
    o = TimedOracle(tiny.oracle())
    idx = o.next_batch(10)
    f, g = o.value_and_grad(tiny.initial_density(0), idx)
    assert np.isfinite(f) and g.shape == tiny.shape and o.evals == 10 and o.seconds > 0
    assert o.n_train == tiny.n_train                  # untimed attributes pass through


def test_warmup_fills_olbfgs_memory_and_a_tonga_refresh():
    assert default_warmup("olbfgs") == 31 and default_warmup("tonga") == 21 and default_warmup("sgd") == 2


@pytest.mark.slow
def test_against_head_times_both_sides(tiny):
    from bench.experiments.against import compare_with_revision
    r = compare_with_revision("HEAD", "synthetic", "tiny", batch_size=20, steps=2, rounds=2)
    assert r["ms_this"] > 0 and r["ms_revision"] > 0 and len(r["commit"]) == 40
    assert 0.2 < r["ratio_this_over_revision"] < 5          # the same code on both sides
