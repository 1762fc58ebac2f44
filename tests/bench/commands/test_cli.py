"""The command line a new user meets first: --version, doctor, help texts (issue 25)."""
import re

import pytest

from bench.cli import main, parser, plain
from bench.commands import COMMANDS
from bench.commands.doctor_cmd import PARTS


def test_version(capsys):
    assert main(["--version"]) == 0
    assert re.match(r"cryoopt \d+\.\d+\.\d+.*Python 3\.\d+", capsys.readouterr().out)


def test_doctor_lists_every_optional_part_with_its_install_command(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("bubblewrap", "RELION", "Chromium", "CuPy", "dask", "torch", "optax"):
        assert name in out
    for part, check, enables, install in PARTS:
        why = check()
        line = next(line for line in out.splitlines() if part in line)
        assert line.startswith("ok" if why is None else "--"), line
        if why is not None:               # a missing part says how to install it
            assert install in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_defaults_and_no_restructuredtext(name):
    sub = parser()._subparsers._group_actions[0].choices[name]
    text = sub.format_help()
    assert "``" not in text and not re.search(r":(func|mod|class|meth|data|attr):`", text), text
    for action in sub._actions:          # every option with a real default shows it
        if action.option_strings and action.default not in (None, False, []) and action.dest != "help":
            assert f"(default:{action.default})".replace(" ", "") in re.sub(r"\s+", "", text), (name, action.dest)


def test_plain_strips_roles():
    assert plain("see :func:`bench.run.runner.run` and ``x``") == "see `bench.run.runner.run` and `x`"
