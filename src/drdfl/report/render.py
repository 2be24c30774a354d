"""The report as a list of blocks, rendered once to Markdown; HTML is made from that Markdown.

Sections build blocks (headings, paragraphs, lists, tables, code, figures); :func:`markdown`
writes them as CommonMark with GFM tables, and :func:`html_page` parses that text with
markdown-it-py and inlines every figure as a base64 PNG, so the page is self-contained.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from markdown_it import MarkdownIt


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    """A paragraph of Markdown (``**bold**``, ``*italic*``, `` `code` ``)."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Table:
    """A table of plain-text cells; ``best`` cells are set in bold."""

    header: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)
    text_columns: int = 1  # leading columns aligned left, the rest right


@dataclass
class Figure:
    path: str  # relative to the output directory, POSIX separators
    png: bytes
    caption: str


Block = Heading | Para | Bullets | Code | Table | Figure


def skipped(what: str, why: str) -> Para:
    """The one line a section shows when its inputs are absent."""
    return Para(f"*{what} skipped: {why}.*")


def _escape_cell(text: str) -> str:
    # A table cell is inline Markdown: escape what would start markup or end the cell.
    out = text
    for char in ("\\", "|", "*", "_", "`", "[", "]", "<"):
        out = out.replace(char, "\\" + char)
    return out


def _table(block: Table) -> str:
    cells = [[_escape_cell(c) for c in row] for row in [block.header, *block.rows]]
    for i, j in block.best:
        cells[i + 1][j] = f"**{cells[i + 1][j]}**"
    align = [":---" if j < block.text_columns else "---:" for j in range(len(block.header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [cells[0], align, *cells[1:]])


def markdown(blocks: Sequence[Block]) -> str:
    """The blocks as one Markdown document."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case Para(text):
                parts.append(text)
            case Bullets(items):
                parts.append("\n".join(f"- {item}" for item in items))
            case Code(text, language):
                parts.append(f"```{language}\n{text.rstrip()}\n```")
            case Table():
                parts.append(_table(block))
            case Figure(path, _, caption):
                parts.append(f"![{PurePosixPath(path).stem}]({path})\n\n*{caption}*")
    return "\n\n".join(parts) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
  max-width: 1250px; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #0072B2; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .86rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .55rem; white-space: nowrap; }
th { background: #f0f4f8; position: sticky; top: 0; }
td { font-variant-numeric: tabular-nums; }
td:first-child { font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafafa; }
tbody tr:nth-child(n) td:has(> strong) { background: #dcebf7; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin-top: 1rem; }
p:has(> img) + p > em:only-child { color: #444; font-size: .9rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .85rem; }
code { background: #f6f8fa; padding: 0 .2rem; }
pre code { padding: 0; background: none; }
"""


def html_page(text: str, title: str, images: dict[str, bytes]) -> str:
    """A self-contained HTML page of the Markdown ``text``; every image whose source is a
    key of ``images`` is replaced by that PNG inlined as a data URI."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and src in images:
                data = base64.b64encode(images[src]).decode("ascii")
                child.attrSet("src", f"data:image/png;base64,{data}")

    def table_open(*_: Any) -> str:
        return '<div class="scroll"><table>\n'

    def table_close(*_: Any) -> str:
        return "</table></div>\n"

    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    body = md.renderer.render(tokens, md.options, {})
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}</body>\n</html>\n"
    )
