"""Text for Markdown reports and help screens: no reStructuredText roles, no machine paths."""
from __future__ import annotations

import os
import re
from pathlib import Path


def plain(text: str) -> str:
    """Docstring text without reStructuredText markup: ``:func:`x``` and ````x```` read as ```x```."""
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def without_machine_paths(text: str, *roots: str | Path) -> str:
    """``text`` with each absolute ``root`` (and the working directory) written relative to the working
    directory, so a committed report names no folder of the machine that made it."""
    cwd = Path.cwd().resolve()
    for root in sorted({Path(r).resolve() for r in roots} | {cwd}, key=lambda p: -len(str(p))):
        rel = os.path.relpath(root, cwd)
        text = text.replace(str(root) + "/", "" if rel == "." else rel + "/").replace(str(root), rel)
    return text
