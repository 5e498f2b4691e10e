"""The docs' examples run as written and print what the pages show (Sybil: docs_examples
says how blocks are marked): the tutorial against an emulator it starts itself, as a reader
does, the guides against the session's emulator, each in a fresh directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sybil.example import SybilFailure

from docs_examples import (
    DOCS,
    MarkerError,
    Shell,
    environment,
    matches,
    normalise,
    pages,
    run_page,
    steps,
    unchecked,
)
from fsmigrate.firestore import emulator as emu_mod

REPO = DOCS.parent
TUTORIAL = DOCS / "tutorial.md"
GUIDES = [p for p in pages() if p != TUTORIAL]
# the targets the guides' examples name, emptied before each guide
GUIDE_TARGETS = [
    ("my-proj", "(default)"),
    ("acme-dev", "(default)"),
    ("acme-stage", "stage"),
    ("acme-prod", "(default)"),
]
# How-to guides whose blocks are not marked yet (none: each runs, or says why not)
NOT_YET: tuple[str, ...] = ()
# The pages whose every command and output is run or compared (or says why not)
CHECKED = [
    TUTORIAL,
    *sorted(p for p in (DOCS / "howto").glob("*.md") if p.name not in NOT_YET),
    DOCS / "team-workflow.md",
    DOCS / "operating-long-runs.md",
]


def _shell(tmp_path: Path, emulator_host: str | None) -> Shell:
    """A directory that looks like a clone of fsmigrate to a page (its docs/ and bin/, a
    copy of its migrations/), and a home directory of its own, where a page makes the new
    directories it works in."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "home").mkdir()
    (work / "docs").symlink_to(DOCS)
    (work / "bin").symlink_to(REPO / "bin")
    shutil.copytree(REPO / "migrations", work / "migrations")
    extra = []
    if emulator_host is None and os.environ.get("FSMIGRATE_EMULATOR_JAR"):
        extra.append(("FSMIGRATE_EMULATOR_JAR", os.environ["FSMIGRATE_EMULATOR_JAR"]))
    env = environment(tmp_path / "home", extra)
    return Shell(work, env, emulator_host=emulator_host)


def test_every_marker_is_followed_by_its_block() -> None:
    for page in DOCS.rglob("*.md"):
        try:
            steps(page)
        except MarkerError as exc:
            pytest.fail(str(exc))
    assert TUTORIAL in pages()
    assert len(steps(TUTORIAL)) >= 10


@pytest.mark.parametrize("page", CHECKED, ids=[str(p.relative_to(DOCS)) for p in CHECKED])
def test_every_command_and_output_shown_is_run_or_says_why_not(page: Path) -> None:
    """A block of commands or output that no test runs would drift unseen: each one is a
    step, the output of one, or marked `not run: WHY`."""
    assert unchecked(page) == [], (
        f"{page.relative_to(REPO)}: blocks neither run nor marked `<!-- test: not run: WHY -->`"
    )


def test_an_output_is_compared_after_normalising_what_changes(tmp_path: Path) -> None:
    home = str(tmp_path)
    shown = "run 20261202T031139Z-368d67 at 2026-12-02T03:11:39.101970Z\n  ...\n  took ... s\n"
    printed = "run 20270101T000000Z-abcdef at 2027-01-01T00:00:00Z\n  a\n  b\n  took 0.3 s   \n"
    assert matches(normalise(shown), normalise(printed, home=home))
    assert not matches(normalise(shown), normalise(printed + "  one line more\n"))
    assert not matches(normalise("in 1 batches"), normalise("in 1 batch"))
    # the emulator's port, the home directory, the host
    assert normalise(f"emulator 127.0.0.1:43859 {home}/x you@box1", home=home, host="box1") == (
        "emulator 127.0.0.1:8080 ~/x you@laptop"
    )
    # a date-suffixed heartbeat id: its date is counted back from the day it was seeded
    assert normalise("from Gamebook_2026-12-06_3f63af83 on 2026-12-06") == (
        "from Gamebook_2026-12-01_3f63af83 on 2026-12-06"
    )
    # a line `...` stands for any lines, none included
    assert matches("a\n...\nc", "a\nc") and matches("a\n...\nc", "a\nb\nb\nc")
    assert not matches("a\n...\nc", "a\nb")


def test_a_drifted_sample_fails_with_the_difference(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- test: run -->\n```sh\necho 'in 1 batch'\n```\n\n```text\nin 1 batches\n```\n"
    )
    [step] = steps(page)
    assert (step.kind, step.output) == ("run", "in 1 batches")
    with pytest.raises(SybilFailure) as failure:
        with Shell(tmp_path, environment(tmp_path)) as shell:
            run_page(page, shell)
    assert "--- the page shows\nin 1 batches\n" in str(failure.value)
    assert "--- the command printed (normalised)\nin 1 batch" in str(failure.value)


@pytest.mark.long
@pytest.mark.emulator
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    """Every marked command of the tutorial, in order, in an empty directory, printing what
    the page shows: it starts its own emulator (`fsmigrate emulator start`) and stops it at
    the end."""
    try:
        with _shell(tmp_path, None) as shell:
            run_page(TUTORIAL, shell)
    finally:  # the tutorial's own emulator, if a step failed before its `stop`
        record = tmp_path / "home" / "fsmigrate-tutorial" / ".fsmigrate" / "emulator.json"
        if record.exists():
            emu_mod.stop_recorded(record)
    work = tmp_path / "home" / "fsmigrate-tutorial"
    assert (work / "plan.md").exists() and (work / "ticket.html").exists()
    assert not (work / ".fsmigrate" / "emulator.json").exists(), "the emulator was not stopped"


@pytest.mark.parametrize("page", GUIDES, ids=[str(p.relative_to(DOCS)) for p in GUIDES])
def test_the_guides_examples_run(page: Path, tmp_path: Path, emulator: emu_mod.Emulator) -> None:
    """The marked blocks of a guide, in order, against the session's emulator, with the
    projects the guides name emptied first, printing what the page shows."""
    for project, database in GUIDE_TARGETS:
        emu_mod.reset(emulator.host_port, project, database)
    with _shell(tmp_path, emulator.host_port) as shell:
        run_page(page, shell)
