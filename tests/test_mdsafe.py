"""Markdown escaping (fsmigrate.report.mdsafe), checked by rendering with a real markdown library:
whatever the text, markdown-it-py shows it as written, in a paragraph, a list item and a
table cell, and never as markup."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from fsmigrate.report import mdsafe
from fsmigrate.report.mdsafe import Md, code, fence, md, row, text

RENDERER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

SPECIALS = list("\\`*_[]<>|~&#!-+=.():;'\"/1234567890 aZé\n\t") + [
    "<script>",
    "</script>",
    "&amp;",
    "_None_",
    "**",
    "```",
    "~~",
    "    ",
    "1. ",
    "- ",
    "# ",
    "> ",
    "---",
    "===",
    "|---|",
    "\x00",
    "\r\n",
    "[x](http://a)",
    "![i](x)",
    "<b>",
]
TEXTS = st.lists(
    st.one_of(
        st.sampled_from(SPECIALS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=5)
    ),
    max_size=12,
).map("".join)


class _Text(HTMLParser):
    """The text of rendered HTML, and the tags it used."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def rendered(markdown: str) -> _Text:
    parser = _Text()
    parser.feed(RENDERER.render(markdown))
    parser.close()
    return parser


def lines_of(value: str) -> list[str]:
    return [mdsafe._visible(line.strip()) for line in value.splitlines() if line.strip()]


def as_prose(value: str) -> str:
    """What text() promises: each line as written, stripped of the spaces at its ends,
    blank lines dropped."""
    return "\n".join(lines_of(value))


@settings(max_examples=300, deadline=None)
@given(TEXTS)
@example("legacy documents: 777 run-suffixed (_None_)")
@example("a <script>alert(1)</script> | b * c `d` __e__")
@example("1. not a list\n# not a heading\n> not a quote\n    not code\n---")
def test_text_renders_as_written_in_a_paragraph_and_a_list_item(value: str) -> None:
    for markdown, tags in (
        (text(value) + "\n", {"p", "br"}),
        ("- " + text(value) + "\n", {"ul", "li", "p", "br"}),
    ):
        found = rendered(markdown)
        assert "".join(found.parts).strip("\n") == as_prose(value), markdown
        assert set(found.tags) <= tags, (markdown, found.tags)


@settings(max_examples=300, deadline=None)
@given(TEXTS, TEXTS)
@example("Foo_None_1a2b3c4d", "a|b")
@example("`x`|y\\|z", "<script>")
def test_a_table_row_keeps_every_cell_whole(first: str, second: str) -> None:
    markdown = (
        mdsafe.header(["id", "note"]) + row([code(first), text(second)]) + row([first, Md("**x**")])
    )
    found = rendered(markdown)
    assert found.tags.count("td") == 4 and found.tags.count("tr") == 3
    cells = RENDERER.parse(markdown)
    inline = [t for t in cells if t.type == "inline"]
    assert [t.content for t in inline[:2]] == ["id", "note"]
    texts = [_text_of(t) for t in inline[2:]]
    assert texts[0] == _expected_code(first)
    assert texts[1] == " ".join(lines_of(second)).strip()
    assert texts[2] == " ".join(lines_of(first)).strip()
    assert texts[3] == "x"


def _text_of(token) -> str:
    return "".join(
        child.content
        for child in token.children
        if child.type in ("text", "code_inline", "softbreak")
    )


def _expected_code(value: str) -> str:
    return mdsafe._visible(value) if value else "(empty)"


@settings(max_examples=300, deadline=None)
@given(TEXTS)
@example("Foo_None_1a2b3c4d")
@example("` a `")
@example("  ")
def test_code_shows_an_id_exactly(value: str) -> None:
    for markdown in (code(value) + "\n", "- " + code(value) + "\n"):
        found = rendered(markdown)
        assert "".join(found.parts).strip("\n") == _expected_code(value), markdown
        assert set(found.tags) <= {"p", "code", "ul", "li"}


@settings(max_examples=100, deadline=None)
@given(TEXTS)
@example("```\n</pre><script>x</script>\n````")
def test_fence_shows_a_block_verbatim(value: str) -> None:
    tokens = RENDERER.parse(fence(value))
    shown = "\n".join(mdsafe._visible(line) for line in value.split("\n"))
    assert [t.type for t in tokens] == ["fence"]
    assert tokens[0].content == shown if shown.endswith("\n") else shown + "\n"
    assert set(rendered(fence(value)).tags) == {"pre", "code"}


def test_md_escapes_its_arguments_unless_they_are_markdown() -> None:
    built = md("project {}, {} by {}", code("my_proj"), "**not bold**", mdsafe.bold("ok"))
    assert built == "project `my_proj`, \\*\\*not bold\\*\\* by **ok**"
    assert isinstance(built, Md) and isinstance(text("x"), Md)
    assert "".join(rendered(built).parts).strip() == "project my_proj, **not bold** by ok"
