"""Untrusted text made safe to show: names, messages and logs that came from submitted code (issue 22).

Whatever a submission writes -- its error messages, its printed output, the
string values of its hyperparameters -- may reach a terminal, a Markdown
table or an HTML page.  There it must not act: an ANSI escape sequence could
clear or rewrite the screen, a carriage return could overprint a line with a
forged one, a ``|`` could add a table column, ``<script>`` could run.

* :func:`plain` -- control characters (C0 but tab and, where allowed,
  newline; DEL; C1, which includes the 8-bit CSI; the bidirectional and
  zero-width format characters that reorder or hide text) become ``?``, and
  the text is capped in length;
* :func:`markdown` -- :func:`plain` on one line, plus Markdown/HTML markup
  neutralised (``\\``, `````, ``*``, ``_``, ``[``, ``]``, ``|`` escaped by a backslash,
  ``&``, ``<``, ``>`` as entities);
* :func:`html` -- :func:`plain` plus :func:`html.escape`.
"""
from __future__ import annotations

import html as _html
import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_MARKDOWN = re.compile(r"([\\`*_\[\]|])")


def plain(text: object, limit: int = 2000, newlines: bool = True) -> str:
    """``str(text)`` with control and invisible format characters replaced by ``?``, at most ``limit`` characters."""
    out = str(text)
    if not newlines:
        out = out.replace("\n", " ")
    out = _CONTROL.sub("?", out)
    return out if len(out) <= limit else out[:limit] + f"[... {len(out) - limit} more characters]"


def markdown(text: object, limit: int = 200) -> str:
    """Safe inside a Markdown table cell (and the HTML it renders to): one line, no markup."""
    out = plain(text, limit, newlines=False)
    out = out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", out)


def html(text: object, limit: int = 2000) -> str:
    """Safe as HTML element text or a quoted attribute value."""
    return _html.escape(plain(text, limit), quote=True)
