"""The ``cryoopt`` command line: thin wrappers, no science (see bench/commands/)."""
from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cryoopt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        doc = module.__doc__.replace("%", "%%")          # argparse formats help strings with %
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc)
        module.add_args(p)
        p.set_defaults(_main=module.main)
    args = parser.parse_args(argv)
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
