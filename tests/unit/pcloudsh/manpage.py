"""Reading the man page's synopsis lines as plain text (what ``man`` shows)."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

MAN_PAGE = Path(__file__).resolve().parents[3] / "man" / "pcloudsh.1"
# font macros whose arguments alternate fonts and are joined without spaces
ALTERNATING = {".BI", ".IB", ".BR", ".RB", ".IR", ".RI"}
FONT_ESCAPE = re.compile(r"\\f[BIRP]")


def plain(line: str) -> str:
    """A font macro line as text: fonts dropped, ``\\-`` a hyphen, spaces normalised."""
    macro, _, rest = line.partition(" ")
    words = shlex.split(rest.replace("\\", "\\\\"))
    text = ("" if macro in ALTERNATING else " ").join(words)
    text = FONT_ESCAPE.sub("", text).replace("\\-", "-").replace("\\&", "")
    return " ".join(text.split())


def synopses() -> dict[str, str]:
    """Each command's synopsis: the text of the line after ``.TP`` or ``.TQ`` that
    starts with its name."""
    lines = MAN_PAGE.read_text(encoding="utf-8").splitlines()
    found: dict[str, str] = {}
    for before, line in itertools.pairwise(lines):
        if before in (".TP", ".TQ") and line.startswith("."):
            text = plain(line)
            found.setdefault(text.split(" ", 1)[0], text)
    return found
