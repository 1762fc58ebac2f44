"""The counting oracle: costs, budgets, batch order, copies, bad input, no test images."""
import numpy as np
import pytest

from problems import BudgetExhausted, OracleInputError, load_problem


def test_each_call_charges_its_cost(tiny):
    o = tiny.oracle()
    x = tiny.initial_density(0)
    idx = o.next_batch(10)
    assert o.evals == 0
    o.value(x, idx)
    assert o.evals == 5.0
    o.value_and_grad(x, idx)
    assert o.evals == 15.0
    o.hvp(x, x, idx)
    assert o.evals == 35.0
    o.expectation(x, idx)
    assert o.evals == 45.0
    o.next_batch(100)                      # drawing indices is free
    assert o.evals == 45.0


def test_budget_is_enforced_before_work(tiny):
    o = tiny.oracle(budget=25)
    x = tiny.initial_density(0)
    o.value_and_grad(x, np.arange(20))
    with pytest.raises(BudgetExhausted, match="budget 25"):
        o.value_and_grad(x, np.arange(10))
    assert o.evals == 20                   # a refused call is not charged
    o.value(x, np.arange(10))              # exactly reaching the budget is allowed
    assert o.evals == 25
    with pytest.raises(BudgetExhausted):
        o.value(x, np.arange(1))
    with pytest.raises(OracleInputError):
        tiny.oracle(budget=-1)


def test_evals_cannot_be_assigned(tiny):
    o = tiny.oracle()
    with pytest.raises(AttributeError):
        o.evals = 0


def test_batch_order_fixed_and_identical_across_oracles(tiny):
    a, b = tiny.oracle(), tiny.oracle()
    first = [a.next_batch(70) for _ in range(12)]       # crosses epoch boundaries (400 images)
    second = [b.next_batch(70) for _ in range(12)]
    for u, v in zip(first, second):
        np.testing.assert_array_equal(u, v)
    flat = np.concatenate(first)
    assert sorted(flat[:400]) == list(range(400))        # each epoch is a permutation
    assert sorted(flat[400:800]) == list(range(400))
    assert not np.array_equal(flat[:400], flat[400:800])  # epochs reshuffle


def test_same_seed_same_data_different_seed_different_data(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOOPT_CACHE", str(tmp_path))
    again = load_problem("synthetic", scale="tiny", seed=0, progress=False)
    assert again.metadata["content_hash"] == tiny.metadata["content_hash"]
    np.testing.assert_array_equal(again.ground_truth, tiny.ground_truth)
    other = load_problem("synthetic", scale="tiny", seed=1, progress=False)
    assert other.metadata["content_hash"] != tiny.metadata["content_hash"]


def test_returned_arrays_are_the_callers(tiny):
    o = tiny.oracle()
    x = tiny.initial_density(0)
    idx = np.arange(8)
    f1, g1 = o.value_and_grad(x, idx)
    g1[...] = np.nan                        # vandalise the result and the input
    x_before = x.copy()
    idx[...] = 0
    f2, g2 = o.value_and_grad(x_before, np.arange(8))
    assert f1 == f2 and np.isfinite(g2).all()
    b = o.next_batch(5)
    b[...] = -1
    assert (o.next_batch(5) >= 0).all()


def test_x_changed_after_call_does_not_change_result(tiny):
    o = tiny.oracle()
    x = tiny.initial_density(0)
    v1 = o.value(x, np.arange(5))
    x *= 2
    assert o.value(x / 2, np.arange(5)) == v1


@pytest.mark.parametrize("bad,match", [
    (lambda x: x[:-1], "shape"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), "NaN"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), "infinite"),
    (lambda x: x.astype(np.complex64), "dtype"),
])
def test_bad_x_gives_clear_error(tiny, bad, match):
    o = tiny.oracle()
    with pytest.raises(OracleInputError, match=f"synthetic-tiny.*{match}"):
        o.value_and_grad(bad(tiny.initial_density(0)), np.arange(3))
    assert o.evals == 0


@pytest.mark.parametrize("idx,match", [
    (np.array([0, 400]), "out of range.*test images"),      # 400 = n_train: would be a test image
    (np.array([-1]), "out of range"),
    (np.array([0.5]), "dtype"),
    (np.array([], dtype=int), "non-empty"),
    (np.array([True, False]), "dtype"),
])
def test_bad_idx_gives_clear_error(tiny, idx, match):
    o = tiny.oracle()
    with pytest.raises(OracleInputError, match=f"synthetic-tiny.*{match}"):
        o.value(tiny.initial_density(0), idx)
    assert o.evals == 0


def test_oracle_holds_no_test_images(tiny):
    o = tiny.oracle()
    test_images = tiny._test[0]
    for value in vars(o).values():
        assert value is not tiny
        if isinstance(value, np.ndarray) and value.dtype == test_images.dtype:
            assert value.shape[0] == o.n_train
            for row in test_images:
                assert not (value == row).all(axis=1).any()
    assert o.n_train + test_images.shape[0] == tiny.metadata["n_train"] + tiny.metadata["n_test"]


def test_test_nll_separates_truth_from_init(tiny):
    assert tiny.test_nll(tiny.ground_truth) < tiny.test_nll(tiny.initial_density(0))


def test_training_reduces_objective(tiny):
    """Plain gradient steps reduce the held-out NLL: the gradient points somewhere useful."""
    o = tiny.oracle()
    x = tiny.initial_density(0)
    start = tiny.test_nll(x)
    for _ in range(20):
        _, g = o.value_and_grad(x, o.next_batch(100))
        x -= 1.0 * g
    assert tiny.test_nll(x) < start - 0.5
