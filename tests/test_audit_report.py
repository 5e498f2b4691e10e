"""The audit report of a run (markdown for a change ticket), the export, --since."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from helpers import Fsm, write_script

CLEANUP = """
def plan(ctx):
    for doc in ctx.scan("sessions"):
        if doc.get("old"):
            yield ctx.delete(doc)
    for doc in ctx.scan("users"):
        yield ctx.update(doc, {"seen": True})
    ctx.note("cleaned sessions, marked users")
"""


@pytest.fixture
def applied(tmp_path: Path, project_id: str, emulator, fs_client):
    for i in range(7):
        fs_client.document(f"sessions/s{i}").set({"old": i < 5, "i": i})
    for i in range(3):
        fs_client.document(f"users/u{i}").set({"i": i})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, CLEANUP, doc="Clean sessions, mark users.")
    dry = fsm.json("upgrade", "--dry-run")["migrations"][0]
    run = fsm.json("upgrade")["migrations"][0]
    return fsm, dry, run


def test_markdown_report_has_who_what_counts_and_checksums(applied, tmp_path) -> None:
    fsm, dry, run = applied
    out = tmp_path / "ticket.md"

    result = fsm("audit", run["run_id"], "--format", "markdown", "-o", str(out))

    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"`{run['run_id']}`" in text and run["checksum"] in text
    assert f"project `{fsm.project}`, database `(default)`" in text
    assert f"`{dry['run_id']}`" in text and "same script" in text and "7 operations" not in text
    assert "8 operations planned" in text  # the dry-run planned 5 deletes + 3 updates
    assert "| delete | 5 | 5 | 0 | 0 | 0 |" in text
    assert "| update | 3 | 3 | 0 | 0 | 0 |" in text
    assert "| `sessions` | 5 | 5 | 0 | 0 | 0 |" in text
    assert "| `users` | 3 | 3 | 0 | 0 | 0 |" in text
    assert "cleaned sessions, marked users" in text
    assert f"audit {run['run_id']} --export before-images.jsonl" in text
    assert "| item | value |\n|---|---|\n| Run |" in text  # a header row, not an empty one
    assert "| Read as of | " in text


EVERY_KIND = """
from google.cloud import firestore

def plan(ctx):
    for doc in ctx.scan("sessions"):
        if doc.get("old"):
            yield ctx.delete(doc)
    for doc in ctx.scan("users"):
        yield ctx.update(doc, {"seen": True})
    yield ctx.set("config/main", {"v": 2})
    yield ctx.create("config/flags", {"on": True})
    yield ctx.create("sessions/s6", {"clobbered": True})   # exists: skipped
    # someone else writes to a planned document before the batch is committed: skipped
    firestore.Client(project=ctx.project).document("sessions/s2").update(
        {"touched": firestore.Increment(1)})
"""


def count_table(text: str, heading: str) -> dict[str, list[int | str]]:
    """The rows of the counts table under `heading`: {label: [planned, committed, ...]}."""
    after = text.split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("|"))
    end = next((i for i in range(start, len(after)) if not after[i].startswith("|")), None)
    lines = after[start:end]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[1:] == ["planned", "committed", "skipped", "failed", "pending"]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = [int(c) if c.isdigit() else c for c in cells[1:]]
    return rows


def test_counts_per_kind_and_collection_are_the_runs_own_and_sum_to_the_total(
    tmp_path, project_id, emulator, fs_client
) -> None:
    for i in range(7):
        fs_client.document(f"sessions/s{i}").set({"old": i < 5, "i": i})
    for i in range(3):
        fs_client.document(f"users/u{i}").set({"i": i})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, EVERY_KIND, doc="Every kind of write.")
    # a dry-run's rows are all `planned`: the same breakdown, nothing committed
    dry = fsm.json("upgrade", "--dry-run")["migrations"][0]
    dry_kinds = count_table(fsm("audit", dry["run_id"], "--format", "markdown").stdout, "## Counts")
    assert dry_kinds.pop("**total**")[:2] == ["11 planned", "0 committed"]
    assert {k: row[0] for k, row in dry_kinds.items()} == {
        "create": 2,
        "delete": 5,
        "set": 1,
        "update": 3,
    }
    assert all(row[1:] == [0, 0, 0, 0] for row in dry_kinds.values())

    run = fsm.json("upgrade")["migrations"][0]
    assert (run["committed"], run["skipped"]) == (9, 2)

    for fmt in ("markdown", "html"):
        assert fsm("audit", run["run_id"], "--format", fmt).exit_code == 0
    text = fsm("audit", run["run_id"], "--format", "markdown").stdout

    kinds = count_table(text, "## Counts")
    assert kinds.pop("**total**")[:4] == [
        "11 planned",
        "9 committed",
        "2 skipped",
        "0 failed or unsettled",
    ]
    assert kinds == {
        "create": [2, 1, 1, 0, 0],
        "delete": [5, 4, 1, 0, 0],
        "set": [1, 1, 0, 0, 0],
        "update": [3, 3, 0, 0, 0],
    }
    collections = count_table(text, "### Per collection")
    assert collections == {
        "`config`": [2, 2, 0, 0, 0],
        "`sessions`": [6, 4, 2, 0, 0],
        "`users`": [3, 3, 0, 0, 0],
    }
    for table in (kinds, collections):
        planned, committed, skipped, failed, pending = (sum(col) for col in zip(*table.values()))
        assert (planned, committed, skipped, failed + pending) == (11, 9, 2, 0)
        assert planned == committed + skipped + failed + pending
    assert "| `sessions/s2` | delete | changed since plan |" in text
    assert "| `sessions/s6` | create | already exists |" in text


def test_apply_without_dry_run_says_so(tmp_path, project_id, emulator, fs_client) -> None:
    fs_client.document("sessions/s1").set({"old": True})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, CLEANUP)
    run = fsm.json("upgrade")["migrations"][0]
    text = fsm("audit", run["run_id"], "--format", "markdown").stdout
    assert "**none** recorded before this apply" in text


def test_export_writes_every_before_image(applied, tmp_path, fs_client) -> None:
    fsm, _, run = applied
    out = tmp_path / "before.jsonl"
    assert fsm("audit", run["run_id"], "--export", str(out)).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["path"] for line in lines) == sorted(
        [f"sessions/s{i}" for i in range(5)] + [f"users/u{i}" for i in range(3)]
    )
    s0 = next(line for line in lines if line["path"] == "sessions/s0")
    assert s0["kind"] == "delete" and s0["before"]["fields"] == {"i": 0, "old": True}


def test_since_lists_recent_runs_newest_first(applied) -> None:
    fsm, dry, run = applied
    db = sqlite3.connect(fsm.state)
    db.execute(
        "UPDATE runs SET started_at='2020-01-01T00:00:00.000000Z' WHERE id=?", (dry["run_id"],)
    )
    db.commit()
    recent = json.loads(fsm("audit", "--since", "7d", "--format", "json").stdout)["runs"]
    assert [r["run_id"] for r in recent] == [run["run_id"]]
    everything = json.loads(fsm("audit", "--format", "json").stdout)["runs"]
    assert [r["run_id"] for r in everything] == [run["run_id"], dry["run_id"]]
    assert fsm("audit", "--since", "soon").exit_code == 2
    assert fsm("audit", "--format", "markdown").exit_code == 2


def test_html_report_is_the_same_report_as_a_page(applied) -> None:
    from markdown_it import MarkdownIt

    fsm, _, run = applied
    page = fsm("audit", run["run_id"], "--format", "html").stdout
    markdown = fsm("audit", run["run_id"], "--format", "markdown").stdout
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert f"<code>{run['run_id']}</code>" in page and run["checksum"] in page
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    tables = page.count("<table>")
    assert tables == rendered.count("<table>") == 3  # summary, kinds, collections
    assert "<td><code>sessions</code></td>\n<td>5</td>\n<td>5</td>" in page
    # each section of the markdown, rendered, is in the page as it is (then its charts)
    sections = rendered.split("<h2>")
    assert len(sections) == 4 and sections[0] in page  # title + summary, 3 sections
    for section in sections[1:]:
        assert "<h2>" + section in page
    assert page.count("<svg") == 2 and "<script" not in page
