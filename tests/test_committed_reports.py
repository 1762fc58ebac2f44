"""Committed reports name no machine's folders, hold Markdown (not reST), and stale outputs stay gone (issue 25)."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(folder: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.stdout.splitlines()]


def test_no_machine_paths_and_no_sphinx_roles():
    texts = [p for p in _tracked("reports") if p.suffix in (".md", ".csv", ".json", ".html")]
    assert texts
    for path in texts:
        text = path.read_text(errors="replace")
        assert not re.search(r"(?<![\w.])/(work|root|home|tmp|Users)/", text), f"{path}: an absolute path"
        if path.suffix == ".md":
            assert not re.search(r":(mod|func|class|meth|data|attr):`", text) and "``" not in text, f"{path}: reST"


def test_stale_small_scale_figures_are_gone():
    names = {p.relative_to(ROOT).as_posix() for p in _tracked("reports")}
    for stale in ("reports/fig3/fig3.png", "reports/fig3/fig3-final.csv", "reports/fig4/fig4.png",
                  "reports/fig6/fig6.png", "reports/fig6/fig6-summary.csv"):
        assert stale not in names


def test_documented_output_folders_are_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "out/report/index.html"], cwd=ROOT)
    assert ignored.returncode == 0
    from bench.cli import parser
    commands = parser()._subparsers._group_actions[0].choices
    for name in ("report", "leaderboard", "reproduce", "condition"):
        out = next(a.default for a in commands[name]._actions if a.dest == "out")
        assert out.split("/")[0] == "out", (name, out)
