"""Outside text (class names, file names, error messages, paths) made safe for Markdown. TF-free.

A Markdown file is read as HTML by most viewers (GitHub, VS Code, static site generators): a class
folder named `<img src=x onerror=alert(1)>` must show as text, a `|` must not split a table cell, a
backtick or a newline must not end a code span or a table row. Three ways in:
- text(s): plain text -> inline Markdown that renders as exactly that text (`<>&` as entities,
  Markdown punctuation backslash-escaped, line breaks as spaces);
- code(s): plain text -> one code span (a fence longer than any backtick run inside);
- rich(s): the report Doc's text, plain text with `code` spans between single backticks (as the HTML
  twin reads it, cxredge/edge/report/page.py inline_code): each span stays a span, the rest goes through text().
cell(s) and table() add what a GFM table cell needs (`\\|`); image() makes an image line.
"""
from __future__ import annotations

import os
import re
from pathlib import PurePath
from urllib.parse import quote

from cxredge.io import shown

INLINE = set("\\`*_|~")  # what can start inline markup anywhere in a line (CommonMark, GFM tables)
LINKISH = re.compile(r"^\[|\](?=[(\[])")  # a link or image needs `](` or `][`, a definition `[x]:` a line start
ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def _flat(s: object) -> str:
    """One line of valid UTF-8 (undecodable file-name bytes as \\xNN): what any Markdown may carry."""
    raw = os.fsdecode(s) if isinstance(s, (bytes, PurePath)) else str(s)
    return shown(LINE_BREAKS.sub(" ", raw.replace("\t", " ")))


def text(s: object, line_start: bool = True) -> str:
    """Plain text as inline Markdown that renders as the same characters, never as markup or HTML.

    line_start: the text may begin a line, where `# `, `- `, `1. ` or `[x]:` would start a block."""
    flat = _flat(s)
    out = []
    for i, c in enumerate(flat):
        if c in ENTITIES:
            out.append(ENTITIES[c])
        elif c == "_" and 0 < i < len(flat) - 1 and flat[i - 1].isalnum() and flat[i + 1].isalnum():
            out.append(c)  # inside a word `_` never starts emphasis: file_names_stay_readable
        elif c in INLINE:
            out.append("\\" + c)
        else:
            out.append(c)
    res = LINKISH.sub(r"\\\g<0>", "".join(out))  # "[1] of 16" stays readable, "[x](url)" is no link
    if not line_start:
        return res
    if re.match(r"[#=+-](?:\s|$|[#=+-])", res):  # "# x", "- x", "---": a heading, list or rule at a line start
        res = "\\" + res
    return re.sub(r"^(\d{1,9})([.)])(?=\s|$)", r"\1\\\2", res)  # "1. x" would start a numbered list


def code(s: object) -> str:
    """Plain text as one code span, whatever backticks it holds (content inside a span is never HTML)."""
    flat = _flat(s)
    if not flat:
        return ""
    runs = [len(r) for r in re.findall(r"`+", flat)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or (flat.startswith(" ") and flat.endswith(" ")) else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def rich(s: object, in_table: bool = False) -> str:
    """Doc text (plain text with `code` spans) as Markdown: spans stay spans, everything else is text().

    In a table cell a span holding `|` becomes text (GFM would split the cell at it)."""
    parts = _flat(s).split("`")
    return "".join(code(p) if i % 2 and not (in_table and "|" in p) else text(p, i == 0 and not in_table)
                   for i, p in enumerate(parts))


def cell(s: object, spans: bool = False) -> str:
    """A GFM table cell: text() escapes `|` (and the backslashes before it); spans=True keeps `code`."""
    return rich(s, in_table=True) if spans else text(s, line_start=False)


def table(headers: list, rows: list[list], spans: bool = False) -> str:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(c, spans) for c in r) + " |" for r in rows])


def image(caption: object, target: str) -> str:
    """![caption](target): the caption as text, the relative path percent-encoded (spaces, parentheses)."""
    return f"![{text(caption)}]({quote(_flat(target), safe='/')})"
