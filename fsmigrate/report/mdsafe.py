"""Markdown that reads the same in any renderer: text from migrations, Firestore and the
operator (document IDs, paths, notes, errors) is escaped or put in code spans, so an ID
like `Foo_None_1a2b3c4d` keeps its underscores and `<script>` stays text.

Build every piece of a report from these: `text()` for prose, `code()` for IDs and
paths, `bold()`, `md()` to fill a markdown template, `fence()` for a block shown verbatim,
`row()` for a table row. Each returns `Md`, markdown that is safe as it is; anything else
given where markdown is expected (a plain `str` cell, an argument of `md()`) is escaped as
prose. Pure functions; tested by rendering with markdown-it-py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Union

# Every character that starts inline markup somewhere (CommonMark + GFM): escaped anywhere.
_INLINE = re.compile(r"([\\`*_\[\]<>|~&#!])")
# At the start of a line these open a block (list, heading, quote, setext, thematic break).
_BLOCK_START = re.compile(r"^([-+=>]|(\d{1,9})([.)]))")


class Md(str):
    """Markdown that is safe as it is: built by this module, or a literal template."""


Cell = Union[Md, object]


def _visible(value: str) -> str:
    """Control characters (newlines, tabs, NUL...) as Python escapes: a table cell or a
    code span has no line to break."""
    if not any(unicodedata.category(ch) == "Cc" for ch in value):
        return value
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) == "Cc" else ch
        for ch in value
    )


def text(value: object) -> Md:
    """Prose, shown as written. Markup characters are backslash-escaped; each line is
    stripped (leading spaces would indent code, trailing ones break lines) and a line
    that would open a block is escaped; line breaks are kept as hard breaks (blank lines
    are dropped: they would end the paragraph, the list item or the table), other
    control characters shown as escapes (`\\t`)."""
    lines = []
    for line in str(value).splitlines():
        line = _INLINE.sub(r"\\\1", _visible(line.strip()))
        if not line:
            continue
        match = _BLOCK_START.match(line)
        if match and match.group(2):
            line = f"{match.group(2)}\\{match.group(3)}{line[match.end() :]}"
        elif match:
            line = "\\" + line
        lines.append(line)
    return Md("\\\n".join(lines))


def cell(value: Cell) -> Md:
    """Markdown as it is; anything else escaped as prose."""
    return value if isinstance(value, Md) else text(value)


def md(template: str, *args: Cell) -> Md:
    """`template` (trusted markdown with `{}` fields) filled with `args`, each escaped as
    prose unless it is `Md` already: `md("project {}, {} planned", code(p), n)`."""
    return Md(template.format(*(cell(a) for a in args)))


def code(value: object) -> Md:
    """An ID, path or other literal as a code span, exactly (control characters escaped):
    a fence longer than any run of backticks inside, padded when it starts or ends with a
    backtick or a space. In a table, `row()` escapes its pipes."""
    value = _visible(str(value))
    if not value:
        return Md("(empty)")
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    ticks = "`" * (longest + 1)
    if value[0] in "` " or value[-1] in "` ":
        if value.strip(" "):
            value = f" {value} "
    return Md(f"{ticks}{value}{ticks}")


def bold(value: Cell) -> Md:
    """Strong emphasis (a plain value is escaped as prose first)."""
    inner = cell(value)
    return Md(f"**{inner}**") if inner else inner


def fence(value: object, info: str = "") -> Md:
    """A fenced block shown verbatim (control characters but line feeds as escapes): the
    fence is longer than any run of backticks in it."""
    body = "\n".join(_visible(line) for line in str(value).split("\n"))
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=2)
    ticks = "`" * (longest + 1)
    return Md(f"{ticks}{info}\n{body}{'' if body.endswith(chr(10)) else chr(10)}{ticks}\n")


def row(cells: Iterable[Cell]) -> Md:
    """One table row (plain values escaped as prose). A cell is one line (hard breaks
    become spaces) and every `|` in it is escaped: GFM splits cells before it parses code
    spans, and unescapes `\\|` inside them."""
    out = (cell(c).replace("\\\n", " ").replace("|", "\\|") for c in cells)
    return Md("| " + " | ".join(out) + " |\n")


def header(names: Iterable[Cell]) -> Md:
    """A table's header row and its delimiter row."""
    names = list(names)
    return Md(row(names) + "|" + "---|" * len(names) + "\n")
