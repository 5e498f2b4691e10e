"""The docs' examples run: the tutorial's commands against an emulator it starts itself, as a
reader does, and the guides' marked blocks against the session's emulator (docs_examples
says how blocks are marked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from docs_examples import DOCS, MarkerError, pages, script, steps
from fsmigrate.firestore import emulator as emu_mod

REPO = DOCS.parent
TUTORIAL = DOCS / "tutorial.md"
GUIDES = [p for p in pages() if p != TUTORIAL]
GUIDE_PROJECT = "my-proj"  # the project the guides' examples name


def _env(tmp_path: Path, emulator_host: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FSMIGRATE_", "FIRESTORE_", "GOOGLE_CLOUD_PROJECT", "PYTEST_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")  # `~/...` in a page stays inside the test
    env["REPO"] = str(REPO)
    env["FSMIGRATE_OPERATOR"] = "docs-test"
    if emulator_host:
        env["FIRESTORE_EMULATOR_HOST"] = emulator_host
    else:
        env["FSMIGRATE_EMULATOR_JAR"] = os.environ.get("FSMIGRATE_EMULATOR_JAR", "")
        if not env["FSMIGRATE_EMULATOR_JAR"]:
            del env["FSMIGRATE_EMULATOR_JAR"]
    return env


def _run_page(page: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (cwd / "home").mkdir(exist_ok=True)
    body = script(page)
    (cwd / "page.sh").write_text(body)
    result = subprocess.run(
        ["bash", str(cwd / "page.sh")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (cwd / "page.out").write_text(result.stdout)  # kept for a look after a failure
    (cwd / "page.err").write_text(result.stderr)
    assert result.returncode == 0, (
        f"{page.relative_to(REPO)}: an example failed (exit {result.returncode}); the last "
        f"`###` line says which block\n--- stdout\n{result.stdout[-4000:]}\n"
        f"--- stderr\n{result.stderr[-6000:]}"
    )
    return result


def test_every_marker_is_followed_by_its_block() -> None:
    for page in DOCS.rglob("*.md"):
        try:
            steps(page)
        except MarkerError as exc:
            pytest.fail(str(exc))
    assert TUTORIAL in pages()
    assert len(steps(TUTORIAL)) >= 10


@pytest.mark.long
@pytest.mark.emulator
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    """Every marked command of the tutorial, in order, in an empty directory: it starts
    its own emulator (`fsmigrate emulator start`) and stops it at the end."""
    work = tmp_path / "work"
    work.mkdir()
    try:
        result = _run_page(TUTORIAL, work, _env(work, None))
    finally:  # the tutorial's own emulator, if a step failed before its `stop`
        record = work / ".fsmigrate" / "emulator.json"
        if record.exists():
            emu_mod.stop_recorded(record)
    # What the tutorial says happens, happened:
    assert "created migrations/0001_delete_expired_sessions.py" in result.stdout
    assert "planned: 8 delete" in result.stdout
    assert "committed 8, skipped 0, failed 0" in result.stdout
    assert "create  sessions/s03" in result.stdout
    assert (work / "plan.md").exists() and (work / "ticket.html").exists()
    assert not (work / ".fsmigrate" / "emulator.json").exists(), "the emulator was not stopped"


@pytest.mark.parametrize("page", GUIDES, ids=[str(p.relative_to(DOCS)) for p in GUIDES])
def test_the_guides_examples_run(page: Path, tmp_path: Path, emulator: emu_mod.Emulator) -> None:
    """The marked blocks of a guide, in order, against the session's emulator, with the
    project the guides name emptied first."""
    emu_mod.reset(emulator.host_port, GUIDE_PROJECT)
    work = tmp_path / "work"
    work.mkdir()
    _run_page(page, work, _env(work, emulator.host_port))
