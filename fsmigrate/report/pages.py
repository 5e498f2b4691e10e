"""Standalone HTML pages: Jinja2 templates (fsmigrate/templates/, autoescaped) and the
markdown of a report rendered by markdown-it-py. A page carries its CSS and its charts as
inline SVG, loads nothing and runs no script (its Content-Security-Policy says so), so it
works offline, as a ticket attachment."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("fsmigrate.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["px"] = lambda value: f"{float(value):.1f}"
    env.filters["number"] = lambda value: (
        f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    )
    return env


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark with GFM tables and strikethrough; raw HTML in the markdown is shown as text
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def markdown_html(markdown: str) -> Markup:
    """Markdown (from fsmigrate.report.mdsafe) as HTML; raw HTML in it is escaped, not passed."""
    return Markup(_markdown().render(markdown))


def render(template: str, **context: Any) -> Iterator[str]:
    """The page, streamed in chunks."""
    yield from environment().get_template(template).generate(**context)
