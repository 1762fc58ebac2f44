"""One Problem type for every family: the likelihood (marginal or known-pose) is a part (issue 20)."""
import numpy as np
import pytest

from problems import OracleInputError, Problem, load_problem
from problems.data.cache import BandData


@pytest.fixture(scope="module")
def refine():
    return load_problem("refine-known-poses", scale="tiny", seed=0)


def test_both_families_are_one_type(tiny, refine):
    assert type(tiny) is Problem and type(refine) is Problem
    assert tiny.model.kind == "marginal" and refine.model.kind == "known-pose"
    shared = {"problem", "version", "box_size", "pixel_size_angstrom", "r_max", "resolution_angstrom", "sigma",
              "interpolation", "n_train", "n_test", "batch_order_seed", "content_hash"}
    assert shared <= set(tiny.metadata) & set(refine.metadata)


def test_known_pose_problem_has_the_whole_surface(refine):
    x = refine.initial_density(0)
    per_image = refine.test_nll(x, batch=7, per_image=True)
    assert per_image.shape == (refine.metadata["n_test"],)
    assert refine.test_nll(x) == pytest.approx(per_image.mean(), rel=1e-6)
    # the held-out NLL is the likelihood's at the test images' own poses, not the training ones'
    lik = refine.likelihood()
    direct = lik.nll(x, lik.prepare(*refine.split_arrays("test")))
    assert np.allclose(per_image, direct, rtol=1e-6)
    wrong = lik.nll(x, lik.prepare(*(a[:per_image.size] for a in refine.split_arrays("train"))))
    assert not np.allclose(per_image, wrong, rtol=1e-3)
    val = refine.validation_split(30, seed=1)
    assert val.n_train == refine.n_train - 30 and val.metadata["n_test"] == 30
    assert val.metadata["content_hash"] != refine.metadata["content_hash"]
    with pytest.raises(OracleInputError, match="known poses"):
        refine.oracle().expectation(x, [0])


def test_known_pose_part_needs_rotations(refine):
    images, ctf, _ = refine.split_arrays("train")
    data = BandData(images, ctf, 3.0, refine.box_size)
    with pytest.raises(ValueError, match="needs rotations"):
        Problem(data=data, test_indices=np.arange(5), **refine._init_args)
