"""Files that hold copies of documents are readable by their owner only: the state file
with its -wal and -shm files, plan files, exports and audits with before-images. An
existing state file that others can read gets a warning, and is left as it is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.state.database import State
from helpers import Fsm, write_script

DELETE_ALL = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    previous = os.umask(0o022)  # files are made 0644 unless fsmigrate says otherwise
    yield
    os.umask(previous)


def test_files_with_copies_of_documents_are_the_owners_only(
    tmp_path: Path, project_id: str, emulator, fs_client, open_umask
) -> None:
    for i in range(3):
        fs_client.document(f"items/i{i}").set({"i": i})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE_ALL)
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan)).exit_code == 0
    run_id = fsm.json("apply", str(plan))["migrations"][0]["run_id"]
    held = State.open(fsm.state)  # an open connection keeps -wal and -shm in place
    assert all(Path(f"{fsm.state}{end}").exists() for end in ("", "-wal", "-shm"))

    assert {end: mode(Path(f"{fsm.state}{end}")) for end in ("", "-wal", "-shm")} == {
        "": 0o600,
        "-wal": 0o600,
        "-shm": 0o600,
    }
    assert mode(plan) == 0o600
    assert fsm("audit", run_id, "--export", str(tmp_path / "export.jsonl")).exit_code == 0
    assert mode(tmp_path / "export.jsonl") == 0o600
    assert fsm("audit", run_id, "--format", "jsonl", "-o", str(tmp_path / "a.jsonl")).exit_code == 0
    assert mode(tmp_path / "a.jsonl") == 0o600  # it holds the before-images too
    assert fsm("audit", run_id, "--format", "markdown", "-o", str(tmp_path / "a.md")).exit_code == 0
    assert mode(tmp_path / "a.md") == 0o644  # a report for a ticket: no document values
    held.close()


def test_a_state_file_others_can_read_gets_a_warning_and_keeps_its_mode(
    tmp_path: Path, open_umask
) -> None:
    path = tmp_path / "state.db"
    State.open(path).close()
    path.chmod(0o644)
    fsm = Fsm("p", path, tmp_path / "migrations")

    history = fsm("history")

    assert history.exit_code == 0
    assert history.stderr.startswith("WARNING: state file readable by others: ")
    assert f"chmod 600 {path}" in history.stderr and len(history.stderr.splitlines()) == 1
    assert mode(path) == 0o644  # never changed behind the owner's back
    with pytest.warns(api.FsMigrateWarning, match="readable by others"):  # the API warns too
        api.history(api.Config(project="p", state=path))
    path.chmod(0o600)
    assert fsm("history").stderr == ""
