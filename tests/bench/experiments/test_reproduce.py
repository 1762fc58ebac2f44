"""The paper's figures (bench.experiments.reproduce) and RELION as a Fig. 6 entry (bench.experiments.relion)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import starfile

from bench.experiments import relion
from bench.experiments.reproduce import protocol, reproduce


def test_tuning_budget_is_a_subset_at_paper_scale_and_two_epochs_at_most():
    assert protocol.tuning_budget(50_000) == 10_000          # a fifth of the paper's training set
    assert protocol.tuning_budget(400) == 800
    assert protocol.tuning_budget(400, "hessian-free") == 5 * 3300    # 5 HF iterations, not none
    assert protocol.tuning_budget(50_000, "olbfgs") == 10_000
    assert protocol.tuned_parameter("hessian-free") == "damping"
    assert protocol.tuned_parameter("sgd") == "lr"
    assert protocol.tuned_parameter("em") is None            # no step size to tune


def test_tuning_keeps_a_margin_from_the_stability_edge():
    inf = float("inf")
    # small-scale SGD (measured): 16 best, 32 diverged -> 8, since scored runs are up to 50x longer
    trials = [(1, 54.07), (2, 53.66), (4, 53.38), (8, 52.53), (16, 51.72), (32, inf)]
    assert protocol._with_margin(trials, 16, 51.72, True) == (8, True)
    # a finite blow-up counts as unstable too (synthetic tiny: lr 4 reached NLL 2.7e5)
    assert protocol._with_margin([(1, 16.3), (2, 16.21), (4, 2.7e5)], 2, 16.21, True) == (1, True)
    # a stable bolder neighbour: the best stands; damping is bolder when smaller
    assert protocol._with_margin([(1, 17.0), (2, 16.5), (4, 16.6)], 2, 16.5, True) == (2, False)
    assert protocol._with_margin([(0.1, inf), (0.2, 16.2), (0.4, 16.3)], 0.2, 16.2, False) == (0.4, True)


def test_healpix_order_matches_the_quadrature_step():
    # our quadrature's angular step is about 1/r_max rad; RELION's HEALPix step is 60 / 2^h degrees
    for r_max in (3.0, 5.12, 6.4, 10.24):
        h = relion.healpix_order(r_max)
        assert 60.0 / 2**h <= np.degrees(1 / r_max) < 2 * 60.0 / 2**h


def test_subset_star_holds_only_training_rows_without_poses(tiny, tmp_path):
    directory, test = relion.dataset_files("synthetic", "tiny", 0)
    assert len(test) == tiny.metadata["n_test"] + tiny.metadata.get("n_score", 0)   # every held-out image
    train = np.setdiff1d(np.arange(tiny.n_train + len(test)), test)
    chosen = train[::7]
    out = relion.subset_star(directory, chosen, tmp_path / "sub.star")
    star = starfile.read(out, always_dict=True)
    parts = star["particles"]
    assert len(parts) == len(chosen)
    assert not set(relion.POSE_COLUMNS) & set(parts.columns)         # RELION must search poses itself
    index = parts["rlnImageName"].str.split("@").str[0].astype(int) - 1  # STAR image numbers are 1-based
    assert set(index) == set(chosen) and not set(index) & set(test)
    stack = parts["rlnImageName"].iloc[0].split("@")[1]
    assert stack.startswith("/") and shutil.os.path.exists(stack)
    original = starfile.read(directory / "particles.star", always_dict=True)["particles"]
    np.testing.assert_allclose(parts["rlnDefocusU"].to_numpy(), original["rlnDefocusU"].to_numpy()[np.sort(chosen)])


def test_relion_command_has_the_documented_settings(tmp_path):
    cmd = relion.command(tmp_path / "a.star", tmp_path / "ref.mrc", tmp_path / "run", ini_high=60.0,
                         particle_diameter=300.0, healpix=3, offset_range=2.0, iterations=5)
    text = " ".join(cmd)
    for flag in ("--firstiter_cc", "--iter 5", "--K 1", "--healpix_order 3", "--offset_range 2", "--ini_high 60.00",
                 "--ctf", "--j 2"):
        assert flag in text


@pytest.mark.slow          # 8 s: the default suite must stay under 3 minutes on a fresh clone (cold numba caches)
def test_reproduce_fig6_tiny_protocol(tiny, tmp_path):
    """Fig. 6 at tiny scale without RELION: tuned SGD, EM and projection matching, tuning cost and wall time."""
    out = tmp_path / "reports"
    written = reproduce("fig6", "tiny", str(tmp_path / "results"), str(out), progress=False, relion=False)
    fig = out / "fig6"
    assert fig / "fig6-synthetic-tiny.png" in written and fig / "fig6-synthetic-tiny-isosurface.png" in written
    summary = pd.read_csv(fig / "fig6-synthetic-tiny.csv")
    assert set(summary.optimizer) == {"em", "projection-matching", "sgd"}
    assert (summary.status == "finished").all() and np.isfinite(summary.final_test_nll).all()
    tuning = pd.read_csv(fig / "fig6-synthetic-tiny-tuning.csv")
    n_trials = len(tuning.loc[0, "trials (value: validation NLL)"].split(";"))
    assert tuning.loc[0, "optimizer"] == "sgd" and 4 <= n_trials <= 4 + protocol.MAX_EXTENSIONS
    assert tuning.loc[0, "cost_evals"] == n_trials * 800                     # every trial: 2 epochs of tiny
    chosen = json.loads(tuning.loc[0, "hyper"].replace("'", '"'))["lr"]
    sgd = summary[summary.optimizer == "sgd"].iloc[0]
    assert f"'lr': {chosen}" in sgd.hyperparameters                          # the scored run uses the tuned value
    timing = json.loads((fig / "fig6-synthetic-tiny-timing.json").read_text())
    assert timing["total_wall_seconds"] > 0 and "tuning" in timing["wall_seconds"]
    report = (fig / "fig6-tiny.md").read_text()
    assert "Wall time" in report and "Tuning cost" in report
    assert "``" not in report and ":mod:" not in report and ":func:" not in report     # Markdown, not reST
    assert str(tmp_path) not in report                                             # no machine paths
    again = reproduce("fig6", "tiny", str(tmp_path / "results"), str(out), progress=False, relion=False)
    assert json.loads((fig / "fig6-synthetic-tiny-timing.json").read_text())["records_reused"] == 3
    assert set(again) == set(written)


@pytest.mark.slow
def test_reproduce_fig3_fig4_tiny_both_panels(tiny, tmp_path):
    out = tmp_path / "reports"
    for figure in ("fig3", "fig4"):
        reproduce(figure, "tiny", str(tmp_path / "results"), str(out), progress=False)
    for label in ("synthetic-tiny", "realistic-tiny"):
        final = pd.read_csv(out / "fig3" / f"fig3-{label}.csv")
        assert len(final) == 7 and (final.status == "finished").all()
        assert (out / "fig4" / f"fig4-{label}-isosurface.png").exists()
        assert (out / "fig4" / f"fig4-{label}-slices.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not relion.available(), reason="RELION not installed")
def test_relion_entry_tiny_end_to_end(tiny, tmp_path):
    """RELION 3.1 on 60 tiny training images, 2 iterations, from our initial density: scored like a run."""
    directory, test = relion.dataset_files("synthetic", "tiny", 0)
    out = relion.run_relion(tiny, directory, test, tmp_path, n_particles=60, iterations=2)
    start = tiny.test_nll(tiny.initial_density(0))
    assert out["map"].shape == tiny.shape and np.isfinite(out["test_nll"])
    assert out["test_nll"] < start                 # EM from the same start improves the held-out NLL
    # the intensity scale is fitted on training images: it must beat RELION's own scale there
    from bench.experiments.relion import fit_scale
    o, idx = tiny.oracle(), np.arange(500 if tiny.n_train >= 500 else tiny.n_train)
    raw = out["map"] / out["scale"]
    assert fit_scale(tiny, raw) == pytest.approx(out["scale"], rel=1e-2)     # bounded search, xatol 1e-3 in log
    assert o.value(out["map"], idx) <= o.value(raw.astype(np.float32), idx) + 1e-6


def test_tuning_trials_skip_the_full_training_objective(tiny, tmp_path):
    """A validation-split run (a tuning trial) is judged by its validation NLL only: no full-objective passes."""
    from bench.run.runner import run
    res = run(tiny.validation_split(100), "sgd", budget=200, results_dir=tmp_path, progress=False,
              compare_truth=False)
    meta = json.loads(res.meta_path.read_text())
    assert meta["status"] == "finished" and np.isfinite(meta["final_test_nll"])
    assert "train_objective" not in meta and "optimality" not in meta


def test_one_panel_keeps_the_other_panels_section(tmp_path):
    """Reproducing --problems realistic rewrites only its own section of the figure's report (issue 25)."""
    from bench.experiments.reproduce import assemble_report
    (tmp_path / "fig3-synthetic-small.section.md").write_text("## synthetic-small: first\n")
    (tmp_path / "fig3-realistic-small.section.md").write_text("## realistic-small: first\n")
    assemble_report(tmp_path, "fig3", "small")
    (tmp_path / "fig3-realistic-small.section.md").write_text("## realistic-small: second\n")
    text = assemble_report(tmp_path, "fig3", "small").read_text()
    assert "synthetic-small: first" in text and "realistic-small: second" in text and "realistic-small: first" not in text
    assert text.index("synthetic-small") < text.index("realistic-small")
    assert "``" not in text and ":mod:" not in text
