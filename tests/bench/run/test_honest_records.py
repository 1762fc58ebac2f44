"""Records that say what happened: plug-in source in the run key, reused failures, where an error
came from, runs that made no step or left budget unspent (issue 25)."""
import json

from bench.cli import main
from bench.run.records import RunMeta, budget_verdict
from bench.run.runner import run

PLUGIN = """from dataclasses import dataclass
@dataclass(frozen=True)
class Opt:
    name = 'opt'
    search_space = {{}}
    def init(self, x0, info, rng): return 0
    def step(self, x, state, oracle, rng):
        b = {batches}[min(state, {n} - 1)]
        _, g = oracle.value_and_grad(x, oracle.next_batch(b))
        return x - {scale} * g, state + 1
"""


def _plugin(path, batches=(100,), scale=0.5):
    path.write_text(PLUGIN.format(batches=list(batches), n=len(batches), scale=scale))
    return f"{path}:Opt"


def test_edited_plugin_is_a_new_run(tiny, tmp_path):
    spec = _plugin(tmp_path / "opt.py")
    first = run(tiny, spec, budget=200, results_dir=tmp_path, progress=False)
    assert run(tiny, spec, budget=200, results_dir=tmp_path, progress=False).skipped
    _plugin(tmp_path / "opt.py", scale=0.25)             # same class name, new source
    edited = run(tiny, spec, budget=200, results_dir=tmp_path, progress=False)
    assert not edited.skipped and edited.key != first.key
    assert edited.final_test_nll != first.final_test_nll
    assert RunMeta.read(edited.meta_path).extra["source_hash"] != RunMeta.read(first.meta_path).extra["source_hash"]


def test_error_keeps_the_users_frames_and_a_reused_failure_says_so(tiny, tmp_path, capsys):
    plugin = tmp_path / "broken.py"
    plugin.write_text("from dataclasses import dataclass\n"
                      "def helper(x):\n"
                      "    return 1 / 0\n"
                      "@dataclass(frozen=True)\n"
                      "class Broken:\n"
                      "    name = 'broken'\n"
                      "    search_space = {}\n"
                      "    def init(self, x0, info, rng): return 0\n"
                      "    def step(self, x, state, oracle, rng):\n"
                      "        return helper(x), state\n")
    args = ["run", "--scale", "tiny", "--optimizer", f"{plugin}:Broken", "--budget", "200",
            "--results", str(tmp_path)]
    assert main(args) == 1
    first = capsys.readouterr().out
    assert f"{plugin}:3 in helper" in first and f"{plugin}:10 in step" in first
    assert "bench/run/runner.py" not in first                # the harness's own frames are left out
    assert "reused" not in first
    assert main(args) == 1
    again = capsys.readouterr().out
    assert "reused" in again and "--force" in again and "status error" in again
    assert "ZeroDivisionError" in again                      # the reused failure repeats its reason


def test_a_run_without_a_completed_step_is_an_error(tiny, tmp_path):
    # the first step spends 100 evaluations, then asks for 400 more: refused, nothing completed
    spec = _plugin(tmp_path / "greedy.py", batches=(100,))
    (tmp_path / "greedy.py").write_text((tmp_path / "greedy.py").read_text().replace(
        "        return x", "        oracle.value_and_grad(x, oracle.next_batch(400))\n        return x"))
    res = run(tiny, spec, budget=300, results_dir=tmp_path, progress=False)
    assert res.status == "error" and "no step completed" in res.message
    meta = RunMeta.read(res.meta_path)
    assert meta.evals == 100 and meta.extra["steps"] == 0


def test_budget_left_unspent_is_marked(tiny, tmp_path):
    # two steps of 100, then a step of 500 that does not fit the 400 left
    spec = _plugin(tmp_path / "jump.py", batches=(100, 100, 500))
    res = run(tiny, spec, budget=600, results_dir=tmp_path, progress=False)
    meta = RunMeta.read(res.meta_path)
    assert res.status == "finished" and meta.extra["budget_unspent"] and meta.extra["unspent_evals"] == 400
    assert "400 of 600 evaluations left unspent" in res.message
    fine = run(tiny, _plugin(tmp_path / "even.py"), budget=650, results_dir=tmp_path, progress=False)
    assert fine.status == "finished" and fine.message == ""          # 50 left < one step: normal end
    assert not RunMeta.read(fine.meta_path).extra["budget_unspent"]


def test_budget_verdict_rules():
    assert budget_verdict("diverged", "m", 0, 10, 100, 0)[:2] == ("diverged", "m")
    assert budget_verdict("finished", "", 0, 90, 100, 0)[0] == "error"
    assert budget_verdict("finished", "", 3, 80, 100, 30)[:2] == ("finished", "")
    status, message, extra = budget_verdict("finished", "", 3, 60, 100, 30)
    assert status == "finished" and extra == {"steps": 3, "unspent_evals": 40, "budget_unspent": True}


def test_run_json(tiny, tmp_path, capsys):
    assert main(["run", "--scale", "tiny", "--budget", "200", "--results", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "finished" and out["final_test_nll"] < out["initial_test_nll"]
    assert out["meta_path"].endswith(".json") and out["skipped"] is False


def test_cli_prints_budget_note(tiny, tmp_path, capsys):
    spec = _plugin(tmp_path / "jump.py", batches=(100, 400))
    assert main(["run", "--scale", "tiny", "--optimizer", spec, "--budget", "400", "--results", str(tmp_path)]) == 0
    assert "left unspent" in capsys.readouterr().out
