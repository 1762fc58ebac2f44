"""Reports keep instances and wrapped optimizers apart (issue 25)."""
from bench.report import build_report
from bench.report.data import display_name, load_runs
from bench.run.records import instance_name, truth_name
from bench.run.runner import run


def test_published_and_scored_instances_are_reported_apart(tiny, tmp_path):
    from problems import load_problem
    scored = load_problem("synthetic", scale="tiny", seed=987654, progress=False)
    assert scored.metadata["content_hash"] != tiny.metadata["content_hash"]
    for problem in (tiny, scored):
        run(problem, "sgd", budget=200, results_dir=tmp_path / "results", progress=False)
    _, metas = load_runs(tmp_path / "results")
    groups = sorted(m["group"] for m in metas)
    assert groups == ["synthetic-tiny (published, seed 0)",
                      f"synthetic-tiny (scored {scored.metadata['content_hash'][:8]})"]
    assert "987654" not in "".join(groups)                   # the secret seed is never shown
    truths = [tmp_path / "results" / "synthetic-tiny" / truth_name(p.metadata["content_hash"]) for p in (tiny, scored)]
    assert all(t.exists() for t in truths) and truths[0].read_bytes() != truths[1].read_bytes()
    names = {p.name for p in build_report(tmp_path / "results", tmp_path / "report", progress=False)}
    assert {"convergence-synthetic-tiny-published-seed-0.png",
            f"convergence-synthetic-tiny-scored-{scored.metadata['content_hash'][:8]}.png"} <= names
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("<h2>synthetic-tiny (") == 2


def test_one_instance_keeps_the_plain_label(tiny, tmp_path):
    run(tiny, "sgd", budget=200, results_dir=tmp_path, progress=False)
    _, metas = load_runs(tmp_path)
    assert [m["group"] for m in metas] == ["synthetic-tiny"]
    assert metas[0]["instance"] == instance_name(tiny.metadata) == "published, seed 0"


def test_wrapped_optimizers_are_different_curves(tmp_path):
    assert display_name("torch", {"optimizer": "RAdam", "lr": 1e-3}) == "torch (RAdam)"
    assert display_name("torch", {"optimizer": "SGD"}) != display_name("torch", {"optimizer": "RAdam"})
    assert display_name("sgd", {"lr": 2.0}) == "sgd"
