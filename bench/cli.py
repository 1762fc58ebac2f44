"""The ``cryoopt`` command line: thin wrappers, no science (see bench/commands/)."""
from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS
from .commands.doctor_cmd import version_text
from .report.markup import plain


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help with every option's default (also those without a help text); descriptions kept as written."""

    def _format_action(self, action):
        text = plain(action.help or "")
        default = action.default             # 0 is a default worth showing; None, False and [] are not
        shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        if action.option_strings and shown and "%(default)" not in text:
            text += (" " if text else "") + "(default: %(default)s)"
        action.help = text or None          # argparse prints no help line for an empty text
        return super()._format_action(action)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cryoopt", description=__doc__.splitlines()[0], formatter_class=_Help)
    root.add_argument("--version", action="version", version="%(prog)s")     # text filled in by main
    sub = root.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        doc = plain(module.__doc__).replace("%", "%%")          # argparse formats help strings with %
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc, formatter_class=_Help)
        module.add_args(p)
        p.set_defaults(_main=module.main)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:               # the version needs git: asked only when wanted
        print(version_text())
        return 0
    args = parser().parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"cryoopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
