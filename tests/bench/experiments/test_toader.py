"""Toader et al.'s conditioning study and runs (bench/experiments/toader_*.py, issue 23)."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bench.experiments import toader_report
from bench.experiments.toader_kappa import (disc_half_plane, kappa_by_radius, kappa_lower_bound, nn_diagonal,
                                            problem_kappa, uniform_kappa)
from bench.experiments.toader_runs import (BandOracle, largest_shell_count, reference_optimum, shell_fsc,
                                           suboptimality)
from bench.score.reference import full_objective
from problems import load_problem
from problems.model.spectra import KnownPoseHessian


@pytest.fixture(scope="module")
def refine():
    return load_problem("refine-known-poses", scale="tiny", seed=0)


def test_bound_matches_their_table():
    got = [round(kappa_lower_bound(r, 1e4), 1) for r in (7, 15, 31, 63, 95, 151)]
    assert got == [9.5, 20.0, 41.5, 84.1, 126.7, 201.4]


def test_kappa_curves_lie_on_or_above_the_bound(refine):
    rows = uniform_kappa((16, 24), n_images=300, draws=2, seed=1)
    assert all(r["kappa_min"] >= r["bound"] > 1 for r in rows)
    out, _ = problem_kappa(refine)
    assert len(out["no_ctf"]) == int(refine.band.r_max)
    assert all(k >= b for k, b in zip(out["no_ctf"], out["bound"]))
    assert all(k >= b for k, b in zip(out["ctf"], out["bound"]))


def test_spectral_snr_per_shell_is_stated(refine):
    snr = refine.metadata["truth"]["spectral_snr_per_shell"]
    assert len(snr) == int(np.rint(refine.band.r_max)) + 1 and all(v > 0 for v in snr)
    # measured on the data: the images' power per shell is the clean power plus sigma^2 (noise), within sampling
    images, _, _ = refine.split_arrays("train")
    shell = np.rint(np.hypot(*refine.band.k.T)).astype(int)
    measured = np.bincount(shell, np.mean(np.abs(images) ** 2, axis=0)) / np.bincount(shell) - refine.sigma ** 2
    assert np.allclose(measured[1:], snr[1:], atol=0.08, rtol=0.1)


def test_nn_diagonal_is_exact_counting():
    rng = np.random.default_rng(0)
    rot = Rotation.random(4, random_state=rng).as_matrix()
    k = disc_half_plane(3.0)
    ctf = rng.uniform(-1, 1, (4, k.shape[0]))
    nx, c = 9, 4
    brute = np.zeros((nx,) * 3)
    for i in range(4):
        for t, (kx, ky) in enumerate(k):
            q = kx * rot[i, 0] + ky * rot[i, 1]
            for sign in ((1,) if kx == ky == 0 else (1, -1)):
                ix, iy, iz = np.rint(sign * q).astype(int)
                brute[c + iz, c + iy, c + ix] += ctf[i, t] ** 2
    got = nn_diagonal(rot, k, ctf, nx, lam=0.0)
    assert np.allclose(got, brute / 4)
    ones = nn_diagonal(rot, k, None, nx, lam=0.0)
    assert ones[c, c, c] == pytest.approx(1.0)                         # every slice passes through the origin
    assert ones.sum() == pytest.approx(2 * k.shape[0] - 1)           # the full disc, once per image
    assert kappa_by_radius(ones + 1e-8, [0])[0] == pytest.approx(1.0)


def test_reference_is_certified_and_suboptimality_exact(refine):
    hess = KnownPoseHessian(refine)
    ref = reference_optimum(hess)
    assert ref["relative_residual"] < 1e-8 and ref["gap_bound"] < 1e-10 and ref["kappa_trilinear"] > 1
    assert ref["ritz_residual_min"] < 1e-3 * ref["lambda_min"] and ref["ritz_residual_max"] < 1e-3 * ref["lambda_max"]
    dense = np.linalg.eigvalsh(np.column_stack([ref_op_column(hess, j) for j in range(hess.basis.size)]))
    assert ref["lambda_min"] == pytest.approx(dense[0], rel=1e-5) and ref["lambda_max"] == pytest.approx(dense[-1], rel=1e-5)
    a = hess.basis.from_volume(refine.initial_density(0).astype(np.float64))
    x, x_star = hess.basis.to_volume(a, np.float32), hess.basis.to_volume(ref["a"], np.float32)
    direct = full_objective(refine, x) - full_objective(refine, x_star)
    assert suboptimality(ref, a) == pytest.approx(direct, rel=1e-3) and direct > 0
    assert suboptimality(ref, ref["a"]) == pytest.approx(0.0, abs=1e-12)
    fsc = shell_fsc(hess.basis, ref["a"], ref["a"])
    assert np.allclose(fsc[1:], 1.0) and shell_fsc(hess.basis, a, ref["a"])[-1] < 0.999


def ref_op_column(hess, j):
    e = np.zeros(hess.basis.size)
    e[j] = 1.0
    return hess.operator().matvec(e)


def test_band_oracle_is_the_chain_rule(refine):
    basis = KnownPoseHessian(refine).basis
    o = BandOracle(refine.oracle(dtype=np.float64), basis)
    rng = np.random.default_rng(2)
    a, d = rng.standard_normal(basis.size), rng.standard_normal(basis.size)
    idx = o.next_batch(50)
    _, g = o.value_and_grad(a, idx)
    eps = 1e-4
    fd = (o.value(a + eps * d, idx) - o.value(a - eps * d, idx)) / (2 * eps)
    assert g @ d == pytest.approx(fd, rel=1e-7)
    assert o.evals == 50 + 2 * 0.5 * 50
    assert largest_shell_count(6) > largest_shell_count(3)


def test_reproduce_toader_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(toader_report, "UNIFORM", {"tiny": ((16,), 200, 2)})
    monkeypatch.setattr(toader_report, "EPOCHS", 3)
    monkeypatch.setattr(toader_report, "SPEED_BOX", 24)
    paths = toader_report.reproduce_toader("tiny", tmp_path, progress=False)
    names = {p.name for p in paths}
    assert {"README.md", "toader.json", "kappa.png", "loss.png", "fsc.png", "fsc_heatmap.png", "diag_h.png"} <= names
    rec = json.loads((tmp_path / "toader-tiny" / "toader.json").read_text())
    assert set(rec["runs"]) == {"sgd", "sgd-diag", "alg1", "alg1-nothreshold"}
    for run in rec["runs"].values():
        subs = [r["suboptimality"] for r in run["rows"]]
        assert len(subs) == 4 and subs[-1] < subs[0]
    text = (tmp_path / "toader-tiny" / "README.md").read_text()
    assert "point by point" in text and "3.4x" in text and "Dominant phase" in text
    assert rec["speed"]["box"] == 24 and rec["speed"]["epoch_seconds"] == pytest.approx(
        30 * rec["speed"]["seconds_per_step"])


def test_known_poses_from_a_particle_file_undo_the_shifts(monkeypatch):
    """RELION STAR with poses and shifts (tests/data/relion_tiny, simulated): the least-squares optimum
    explains the images far better with the file's shifts undone than with their sign flipped."""
    import problems.catalog.refine as refine_mod
    from problems.data.io import read_particles
    path = "tests/data/relion_tiny/particles.star"
    kw = dict(scale="tiny", n_test=20, r_max_fraction=0.5, progress=False)
    right = load_problem("refine-known-poses", path=path, **kw)
    assert right.n_train == 200 and right.model.kind == "known-pose" and right.metadata["n_test"] == 20

    def flipped(*args, **kwargs):
        stack = read_particles(*args, **kwargs)
        stack.shifts = -stack.shifts
        return stack

    monkeypatch.setattr(refine_mod, "read_particles", flipped)
    wrong = load_problem("refine-known-poses", path=path, **kw)
    optimum = {}
    for name, p in (("right", right), ("wrong", wrong)):
        hess = KnownPoseHessian(p)
        ref = reference_optimum(hess)
        optimum[name] = full_objective(p, hess.basis.to_volume(ref["a"], np.float32))
    assert np.abs(read_particles(path).shifts).max() > 0.3
    assert optimum["right"] < optimum["wrong"] - 1.0


def test_the_unfloored_run_is_described_as_it_went():
    from bench.experiments.toader_report import _unfloored

    def rec(gaps):
        return {"runs": {"alg1-nothreshold": {"rows": [{"suboptimality": g} for g in gaps]}}}

    assert "grew from 22 (epoch 5) to 2e+06 (epoch 9)" in _unfloored(rec([600, 411, 199, 70, 27, 22, 1e2, 1e3, 1e5, 2e6, 1.8e6]))
    assert "stalls at 24.2 from epoch 5 on" in _unfloored(rec([600, 411, 199, 72, 28.9, 24.26, 24.24, 24.22, 24.21, 24.2, 24.2]))
    assert _unfloored(rec([600, 411, 199, 70, 27, 12, 8, 5, 3, 2, 1.8])) == ""      # still descending: nothing to explain
