"""The typed contracts between modules (issue 12): one atomic-write helper, one
Hutchinson estimator, run specs and summaries, statuses, hyperparameter
coercion, capability flags and the data-cache key."""
import numpy as np
import pytest

from problems.data.io import atomic_path, atomic_write_text
from problems.protocol import hutchinson_diagonal


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "sub" / "entry.json"
    atomic_write_text(target, "old")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"                      # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry.json"]   # no temporary left
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_hutchinson_estimator_is_unbiased_and_converges():
    """On H = A (dense, symmetric) the running mean tends to diag(A); one probe is z * A z exactly."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal((12, 12))
    a = b @ b.T + np.diag(np.arange(1.0, 13.0))
    one = next(hutchinson_diagonal(lambda z: a @ z, (12,), 1, np.random.default_rng(5)))
    z = np.random.default_rng(5).choice(np.array([-1.0, 1.0]), size=(12,))
    np.testing.assert_allclose(one, z * (a @ z))
    estimates = list(hutchinson_diagonal(lambda z: a @ z, (12,), 4000, np.random.default_rng(1)))
    assert len(estimates) == 4000 and estimates[0] is not estimates[-1]
    err = np.abs(estimates[-1] - np.diag(a)).max() / np.abs(np.diag(a)).max()
    assert err < 0.1
    assert np.abs(estimates[9] - np.diag(a)).max() > np.abs(estimates[-1] - np.diag(a)).max()
