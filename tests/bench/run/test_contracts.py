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


# ---------------------------------------------------------------- statuses
def _written_statuses() -> set[str]:
    """Every string literal the harness assigns to a status (``status = ...``, ``status, message = ...``,
    ``{"status": ...}``, ``status=...`` keywords, ``RunSummary(...)`` / ``RunSummary.failed(spec, ...)``)."""
    import ast
    from pathlib import Path

    def literals(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.IfExp):
            yield from literals(node.body)
            yield from literals(node.orelse)
        elif isinstance(node, ast.Tuple) and node.elts:
            yield from literals(node.elts[0])

    found = set()
    for path in (Path(__file__).resolve().parents[3] / "bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    first = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
                    if isinstance(first, ast.Name) and first.id == "status":
                        found.update(literals(node.value))
            elif isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value == "status":
                        found.update(literals(v))
            elif isinstance(node, ast.Call):
                found.update(s for kw in node.keywords if kw.arg == "status" for s in literals(kw.value))
                name = ast.unparse(node.func)
                if name == "RunSummary" and node.args:
                    found.update(literals(node.args[0]))
                elif name.endswith("RunSummary.failed") and len(node.args) > 1:
                    found.update(literals(node.args[1]))
    return found


def test_every_status_the_code_writes_is_listed():
    from bench.run.records import STATUSES
    written = _written_statuses()
    assert {"finished", "diverged", "error", "interrupted"} <= written      # the scan sees the runner
    assert written <= set(STATUSES), f"unlisted statuses: {written - set(STATUSES)}"


def test_records_and_summaries_refuse_unknown_statuses(tmp_path):
    from bench.run.records import RunMeta, write_record
    from bench.run.spec import RunSummary
    with pytest.raises(ValueError, match="not one of"):
        RunSummary("done", "k", None, None)
    meta = dict(run_key="k", problem="p", problem_label="p-tiny", problem_version="1", problem_hash="h",
                optimizer="sgd", optimizer_spec="sgd", hyperparameters={}, seed=0, budget=1.0, evals=1.0,
                status="succeeded", message="", final_test_nll=None)
    with pytest.raises(ValueError, match="not one of"):
        write_record(tmp_path / "k.parquet", tmp_path / "k.json", [{"evals": 0.0}], meta)
    assert not list(tmp_path.iterdir())                                     # nothing written


# ---------------------------------------------------------------- run specs, summaries, records
def test_run_spec_and_summary_round_trip_through_json():
    import json
    from bench.run.spec import RunSpec, RunSummary
    spec = RunSpec("synthetic", "tiny", "sgd", "1epoch", hyper={"lr": 0.5}, seed=2, validation=50)
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown key.*sed"):
        RunSpec.from_dict({**spec.to_dict(), "sed": 1})
    summary = RunSummary.failed(spec, "timeout", "killed after 600 s")
    back = RunSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert back == summary and back.spec.seed == 2 and back.meta_path is None


OLD_RECORD_KEYS = {  # the JSON keys records had before RunMeta (readers and old records rely on them)
    "run_key", "problem", "problem_label", "problem_version", "problem_hash", "optimizer", "optimizer_spec",
    "hyperparameters", "seed", "budget", "evals", "status", "message", "final_test_nll", "reference_test_nll",
    "pixel_size_angstrom", "band_radius", "n_train", "optimizer_seconds", "snapshots", "fsc", "calls",
    "package_version", "git_commit", "machine", "python", "hostname", "cpus"}


def test_record_json_keeps_its_keys_and_reads_back(tiny, tmp_path):
    import json
    from bench.run.records import RunMeta
    from bench.report.data import load_runs
    from bench.run.runner import run
    res = run(tiny, "sgd", budget=200, results_dir=tmp_path, progress=False)
    raw = json.loads(res.meta_path.read_text())
    assert OLD_RECORD_KEYS <= set(raw)                                      # new keys may be added, none lost
    meta = RunMeta.read(res.meta_path)
    assert meta.to_json() == raw and meta.problem_label == "synthetic-tiny" and meta.status == "finished"
    _, metas = load_runs(tmp_path, "synthetic-tiny")
    assert [m["run_key"] for m in metas] == [res.key]
    (tmp_path / "not-a-record.json").write_text('{"hello": 1}')
    assert len(load_runs(tmp_path)[1]) == 1                                # skipped, no crash


# ---------------------------------------------------------------- hyperparameter coercion
def test_integer_and_float_spellings_are_one_run(tiny, tmp_path):
    from bench.run.runner import run
    first = run(tiny, "sgd", {"lr": 1}, budget=100, results_dir=tmp_path, progress=False)
    again = run(tiny, "sgd", {"lr": 1.0}, budget=100, results_dir=tmp_path, progress=False)
    text = run(tiny, "sgd", {"lr": "1", "batch_size": "100"}, budget=100, results_dir=tmp_path, progress=False)
    assert not first.skipped and again.skipped and text.skipped
    assert first.key == again.key == text.key


def test_bad_hyperparameters_fail_before_any_record(tiny, tmp_path):
    from bench.run.runner import run
    from optimizers import coerce_hyperparameters
    for bad, match in (({"lr": "abc"}, "lr: expected a number"), ({"batch_size": 2.5}, "expected an integer"),
                       ({"learning_rate": 1}, "no hyperparameter 'learning_rate'")):
        with pytest.raises(ValueError, match=match):
            run(tiny, "sgd", bad, budget=100, results_dir=tmp_path, progress=False)
    assert not tmp_path.exists() or not any(tmp_path.rglob("*.json"))
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Flags:
        name = "flags"
        nesterov: bool = False
        damping: float | None = None

    assert coerce_hyperparameters(Flags, {"nesterov": "false"}) == {"nesterov": False}   # not the truthy "false"
    assert coerce_hyperparameters(Flags, {"nesterov": "Yes", "damping": 1}) == {"nesterov": True, "damping": 1.0}
    assert coerce_hyperparameters(Flags, {"damping": None}) == {"damping": None}
    with pytest.raises(ValueError, match="nesterov: expected true/false"):
        coerce_hyperparameters(Flags, {"nesterov": "maybe"})


def test_sweep_file_hyperparameters_are_typed_and_checked(tmp_path):
    from bench.run.sweep import load_config
    cfg = tmp_path / "s.toml"
    cfg.write_text('scale = "tiny"\nbudget = 100\n[optimizers.sgd]\nlr = [1, 0.5]\nbatch_size = 50\n')
    specs = load_config(cfg)
    assert [s.hyper for s in specs] == [{"lr": 1.0, "batch_size": 50}, {"lr": 0.5, "batch_size": 50}]
    assert isinstance(specs[0].hyper["lr"], float)
    cfg.write_text('scale = "tiny"\nbudget = 100\n[optimizers.sgd]\nlr = ["abc"]\n')
    with pytest.raises(ValueError, match=r"optimizers\.sgd.*lr: expected a number"):
        load_config(cfg)


def test_cli_run_reports_divergence_and_bad_values_cleanly(tiny, tmp_path, capsys):
    from bench.cli import main
    args = ["run", "--scale", "tiny", "--budget", "1epoch", "--results", str(tmp_path)]
    assert main(args + ["--set", "lr=1e9"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("diverged: test NLL") and "-> n/a" in out and "record:" in out
    assert main(args + ["--set", "lr=abc", "--results", str(tmp_path / "bad")]) == 2
    assert "lr: expected a number" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- the data-cache key
def test_data_cache_key_ignores_objective_only_fields(tmp_path, monkeypatch):
    """Band (r_max) and prior (lambda) shape the objective, not the simulated bytes: one stack."""
    from problems import load_problem
    from problems.catalog.realistic import realistic_spec
    from problems.catalog.synthetic import synthetic_spec
    from problems.data.cache import dataset_dir
    base = dataset_dir(synthetic_spec("tiny"), 0)
    for field in ({"r_max_fraction": 0.3}, {"lambda_plus": 1e-2}, {"lambda_minus": 1e-2}):
        assert dataset_dir(synthetic_spec("tiny", **field), 0) == base
    assert dataset_dir(synthetic_spec("tiny", snr=0.2), 0) != base
    assert dataset_dir(synthetic_spec("tiny"), 1) != base
    assert dataset_dir(realistic_spec("tiny", r_max_fraction=0.2), 0) == dataset_dir(realistic_spec("tiny"), 0)
    assert dataset_dir(realistic_spec("tiny", snr=0.5), 0) != dataset_dir(realistic_spec("tiny"), 0)

    monkeypatch.setenv("CRYOOPT_CACHE", str(tmp_path))                     # end to end, in an empty cache
    plain = load_problem("synthetic", scale="tiny", progress=False)
    other = load_problem("synthetic", scale="tiny", progress=False, r_max_fraction=0.3, lambda_plus=1e-3)
    assert [p.name for p in tmp_path.iterdir()] == [base.name]
    assert other.metadata["content_hash"] != plain.metadata["content_hash"]   # still a different problem
    assert other.band.r_max > plain.band.r_max
    load_problem("synthetic", scale="tiny", progress=False, snr=0.2)
    assert len(list(tmp_path.iterdir())) == 2
