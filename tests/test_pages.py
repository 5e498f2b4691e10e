"""The reports people look at, from a real cleanup of the heartbeat incident against the
emulator: the markdown (rendered by markdown-it-py, every legacy ID intact), and the HTML
pages (audit and health check, before and after) opened in a real browser: no console
errors, every chart drawn with as many bars or points as the data says, legacy IDs
verbatim, a screenshot. Also text made to break a report (`<script>`, `|`, `*`, backticks,
underscores) in IDs, collection names, notes and descriptions: shown as text everywhere."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from browser import Browser, browser  # noqa: F401  (the fixture)
from fsmigrate import heartbeats
from fsmigrate.heartbeats import incident
from helpers import Fsm, write_script

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
LEGACY = 120
RENDERER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


class Page(HTMLParser):
    """Text and tags of an HTML document, as a browser would build it without CSS."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def markdown_text(markdown: str) -> Page:
    return Page(RENDERER.render(markdown))


@dataclass
class Cleanup:
    fsm: Fsm
    dir: Path
    docs: list[tuple[str, dict]]
    dry: dict
    run: dict
    before: dict
    after: dict


@pytest.fixture(scope="module")
def cleanup(tmp_path_factory: pytest.TempPathFactory, emulator) -> Cleanup:
    """The demo in small: the incident, the health check, the dry-run, the apply, the check
    again, and every report of it written to files."""
    from google.cloud import firestore

    out = tmp_path_factory.mktemp("pages")
    fsm = Fsm("test-" + uuid.uuid4().hex[:10], out / "state.db", MIGRATIONS)
    client = firestore.Client(project=fsm.project)
    now = dt.datetime.now(dt.timezone.utc)  # as of the fixture, not the module's import
    incident.seed(client, now, legacy=LEGACY)
    client.close()
    before = _check(fsm, out / "health-before.html")
    dry_out = fsm("upgrade", "--dry-run", "--report", str(out / "plan.md"), "--format", "json")
    assert dry_out.exit_code == 0, dry_out.output
    run = fsm.json("upgrade")["migrations"][0]
    after = _check(fsm, out / "health-after.html")
    for fmt, name in (("markdown", "ticket.md"), ("html", "ticket.html")):
        made = fsm("audit", run["run_id"], "--format", fmt, "-o", str(out / name))
        assert made.exit_code == 0, made.output
    return Cleanup(
        fsm,
        out,
        list(incident.documents(now, legacy=LEGACY)),
        json.loads(dry_out.stdout)["migrations"][0],
        run,
        before,
        after,
    )


def _check(fsm: Fsm, page: Path) -> dict:
    made = fsm("check", "heartbeats", "--format", "html", "-o", str(page))
    assert made.exit_code in (0, 1) and page.exists(), made.output
    found = fsm("check", "heartbeats", "--format", "json")
    return json.loads(found.stdout)


def survivors(docs: list[tuple[str, dict]]) -> dict[str, str]:
    """Independent of the migration: canonical ID -> the freshest legacy document, where it
    is fresher than the canonical document (or there is none): the one it is made from."""
    canonical: dict[str, dt.datetime] = {}
    best: dict[str, tuple[dt.datetime, str]] = {}
    for doc_id, data in docs:
        found = heartbeats.classify(doc_id)
        beat = data["last_heartbeat"]
        if found.is_legacy:
            best[found.canonical_id] = max(
                best.get(found.canonical_id, (beat, doc_id)), (beat, doc_id)
            )
        elif found.kind != heartbeats.UNKNOWN:
            canonical[doc_id] = beat
    return {
        target: doc_id
        for target, (beat, doc_id) in best.items()
        if target not in canonical or canonical[target] < beat
    }


def legacy_ids(docs: list[tuple[str, dict]]) -> list[str]:
    return [doc_id for doc_id, _ in docs if heartbeats.classify(doc_id).is_legacy]


def merged_per_target(docs: list[tuple[str, dict]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc_id in legacy_ids(docs):
        target = heartbeats.classify(doc_id).canonical_id
        out[target] = out.get(target, 0) + 1
    return out


# ---- markdown ------------------------------------------------------------------------------


def test_markdown_reports_keep_every_legacy_id_intact(cleanup: Cleanup) -> None:
    plan = markdown_text((cleanup.dir / "plan.md").read_text())
    ids = legacy_ids(cleanup.docs)
    assert len(ids) == LEGACY and any("_None_" in i for i in ids)
    for doc_id in ids:  # the dry-run report lists every document
        assert f"{heartbeats.COLLECTION}/{doc_id}" in plan.text, doc_id
    assert "em" not in plan.tags  # no underscore became emphasis

    ticket = markdown_text((cleanup.dir / "ticket.md").read_text())
    made_from = survivors(cleanup.docs)
    assert made_from  # the incident has canonical documents created and updated
    assert f"canonical documents of {heartbeats.COLLECTION}: " in ticket.text
    for target, doc_id in made_from.items():
        assert doc_id in ticket.text and target in ticket.text
    runs = sum("_None_" in i for i in ids)
    assert f"legacy documents: {runs} run-suffixed (_None_), " in ticket.text
    assert "em" not in ticket.tags  # no underscore became emphasis


# ---- the pages in a browser ----------------------------------------------------------------


def svg_counts(browser: Browser, chart: str, selector: str) -> dict:
    return browser.js(
        "const svg = document.querySelector(`svg[data-chart='${arguments[0]}']`);"
        "if (!svg) return null;"
        "const box = svg.getBoundingClientRect();"
        "const items = [...svg.querySelectorAll(arguments[1])];"
        "return {width: box.width, height: box.height, count: items.length,"
        " values: items.map(e => Number(e.dataset.value)),"
        " labels: items.map(e => (e.querySelector('text.label') || {}).textContent),"
        " line: svg.querySelector('polyline') ? svg.querySelector('polyline').points.numberOfItems"
        " : null, threshold: svg.querySelectorAll('line.threshold').length};",
        chart,
        selector,
    )


def drawn(browser: Browser, chart: str, selector: str) -> dict:
    found = svg_counts(browser, chart, selector)
    assert found is not None, f"no chart {chart}"
    assert found["width"] > 0 and found["height"] > 0, chart
    return found


def test_the_audit_page_in_a_browser(cleanup: Cleanup, browser: Browser, tmp_path) -> None:
    browser.open(cleanup.dir / "ticket.html")

    assert browser.errors() == []
    assert browser.js("return document.querySelectorAll('script').length") == 0
    operations = json.loads(cleanup.fsm("audit", cleanup.run["run_id"], "--format", "json").stdout)[
        "operations"
    ]
    kinds = {op["kind"] for op in operations}
    per_kind = drawn(browser, "operations-per-kind", "g.bar")
    assert per_kind["count"] == len(kinds) and sum(per_kind["values"]) == len(operations)
    per_collection = drawn(browser, "operations-per-collection", "g.bar")
    assert per_collection["values"] == [len(operations)]  # one collection
    merged = drawn(browser, "merged-per-canonical-id", "g.bar")
    expected = merged_per_target(cleanup.docs)
    assert merged["count"] == len(expected)
    assert sorted(merged["values"]) == sorted(expected.values())
    page = browser.text()
    for target, doc_id in survivors(cleanup.docs).items():
        assert doc_id in page and target in page
    assert "run-suffixed (_None_)" in page and "(*None*)" not in page
    shot = browser.screenshot(tmp_path / "ticket.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_health_pages_in_a_browser(
    cleanup: Cleanup, browser: Browser, tmp_path, when: str
) -> None:
    data = getattr(cleanup, when)
    browser.open(cleanup.dir / f"health-{when}.html")

    assert browser.errors() == []
    by_kind = drawn(browser, "metric-documents_by_kind", "g.bar")
    assert dict(zip(by_kind["labels"], by_kind["values"])) == data["by_kind"]
    series = {s["name"]: s for s in data["series"]}
    legacy = drawn(browser, "series-legacy_written", "rect.bar")
    hourly = int(7 * 24 + 1)  # the default --history 7d, per hour, both ends
    assert legacy["count"] == len(series["legacy_written"]["points"]) == hourly
    assert sum(legacy["values"]) == data["legacy"] == (LEGACY if when == "before" else 0)
    assert legacy["threshold"] == 1
    level = drawn(browser, "series-documents", "rect.hover")
    assert level["line"] == level["count"] == hourly and level["threshold"] == 1
    assert level["values"][-1] == data["total"]
    page = browser.text()
    assert ("UNHEALTHY" if when == "before" else "HEALTHY") in page
    for doc_id in data["legacy_in_window"]:
        assert doc_id in page
    if when == "before":
        assert data["legacy_in_window"]
    shot = browser.screenshot(tmp_path / f"health-{when}.png")
    assert shot.stat().st_size > 10_000


# ---- text made to break a report -----------------------------------------------------------

EVIL_COLLECTION = "c|o*l_`x`<i>"
EVIL_IDS = {
    "source": "Evil_None_<script>alert(1)|*a*`b`__c__&amp;",
    "target": "Evil|*``*_d_<b>",
    "exists": "x`|`<script>y_None_z",
}
EVIL_NOTE = "note <script>alert('n')</script> | *bold* `tick` _None_ [l](http://a) &lt; #1"
EVIL_DESC = "Evil <b>docstring</b> with _underscores_, *stars*, `ticks` | pipes"
EVIL_SCRIPT = """
def plan(ctx):
    for doc in ctx.scan({collection!r}):
        if doc.id == {source!r}:
            yield ctx.rename(doc, {target!r})
    yield ctx.create({collection!r} + "/" + {exists!r}, {{"v": 1}})  # exists: skipped
    ctx.note({note!r})
"""


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory, emulator) -> tuple[Fsm, Path, dict]:
    from google.cloud import firestore

    out = tmp_path_factory.mktemp("evil")
    fsm = Fsm("test-" + uuid.uuid4().hex[:10], out / "state.db", out / "migrations")
    client = firestore.Client(project=fsm.project)
    for key in ("source", "exists"):
        client.collection(EVIL_COLLECTION).document(EVIL_IDS[key]).set({"v": 0})
    unknown = client.collection(EVIL_COLLECTION).document(EVIL_IDS["exists"] + "_unknown")
    unknown.set({"v": 0})
    client.close()
    write_script(
        fsm.migrations,
        "0001",
        None,
        EVIL_SCRIPT.format(collection=EVIL_COLLECTION, note=EVIL_NOTE, **EVIL_IDS),
        doc=EVIL_DESC,
    )
    run = fsm.json("upgrade")["migrations"][0]
    assert (run["committed"], run["skipped"]) == (2, 1)
    for fmt, name in (("markdown", "evil.md"), ("html", "evil.html")):
        assert fsm("audit", run["run_id"], "--format", fmt, "-o", str(out / name)).exit_code == 0
    made = fsm(
        "check",
        "heartbeats",
        "--collection",
        EVIL_COLLECTION,
        "--format",
        "html",
        "-o",
        str(out / "evil-check.html"),
    )
    assert made.exit_code == 0, made.output  # unknown IDs only: reported, not an alarm
    return fsm, out, run


def evil_texts() -> list[str]:
    # the merge table names the target and where it came from, the skipped table the path
    paths = [f"{EVIL_COLLECTION}/{EVIL_IDS['exists']}"]
    return [EVIL_NOTE, EVIL_DESC, EVIL_COLLECTION, *EVIL_IDS.values(), *paths]


def test_ids_and_notes_made_of_markup_are_text_in_markdown_and_html(evil) -> None:
    _, out, _ = evil
    for page in (
        markdown_text((out / "evil.md").read_text()),
        Page((out / "evil.html").read_text()),
    ):
        for text in evil_texts():
            assert text in page.text, text
        assert not {"script", "i", "b", "em", "a", "img"} & set(page.tags)
    check = Page((out / "evil-check.html").read_text())
    assert EVIL_COLLECTION in check.text and EVIL_IDS["exists"] + "_unknown" in check.text
    assert not {"script", "i", "b"} & set(check.tags)


def test_ids_and_notes_made_of_markup_are_text_in_a_browser(evil, browser: Browser) -> None:
    _, out, _ = evil
    for name, texts in (
        ("evil.html", evil_texts()),
        ("evil-check.html", [EVIL_COLLECTION, EVIL_IDS["exists"] + "_unknown"]),
    ):
        browser.open(out / name)
        assert browser.errors() == []
        assert browser.js("return document.querySelectorAll('script, i, b, a').length") == 0
        page = browser.text()
        for text in texts:
            assert text in page, (name, text)
