"""Files that hold copies of documents or their IDs are readable by their owner only: the
state file with its -wal and -shm files, plan files, exports, audits and reports in every
format, check outputs, the Beam journal. One helper creates them (fsmigrate.files), and no
module of the package creates a file any other way (checked on the source). An existing
state file that others can read gets a warning, and is left as it is."""

from __future__ import annotations

import os
import re
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
    for fmt in ("markdown", "html", "text", "json"):  # a report names documents: theirs too
        out = tmp_path / f"a-{fmt}.out"
        assert fsm("audit", run_id, "--format", fmt, "-o", str(out)).exit_code == 0
        assert mode(out) == 0o600, fmt
    report = tmp_path / "report.md"
    assert fsm("upgrade", "--dry-run", "--report", str(report)).exit_code == 0
    assert mode(report) == 0o600
    held.close()


def test_the_beam_journal_is_the_owners_only(
    tmp_path: Path, project_id: str, emulator, fs_client, open_umask
) -> None:
    """Batch files carry before-images: the run's journal directory is 0700, its files 0600."""
    pytest.importorskip("apache_beam")
    from fsmigrate.beam import workfiles

    directory = tmp_path / "journal" / "run1"
    workfiles.make_private(str(directory))
    workfiles.write_file(str(directory / "batch-1.json"), b"{}")
    assert mode(directory) == 0o700
    assert mode(directory / "batch-1.json") == 0o600


# Places that create files with something other than fsmigrate.files, and why that is
# right for them (none of them holds document data or IDs).
NOT_DOCUMENT_DATA = {
    "fsmigrate/files.py": "the helper itself",
    "fsmigrate/state/database.py": "the state file: created 0600 with os.open (O_EXCL)",
    "fsmigrate/scripts/loader.py": "`fsmigrate new`: a migration script skeleton",
    "fsmigrate/scripts/rebase.py": "`fsmigrate rebase`: a migration script renumbered, with "
    "the mode of the file it replaces",
    "fsmigrate/firestore/emulator.py": "the emulator's log and its record (host and port)",
    "fsmigrate/cli.py": "os.devnull for stdout after a broken pipe",
}
WRITES = re.compile(
    r"""open\([^)]*["'](?:w|wb|a|ab|x|xb|w\+b)["']|mkstemp\(|write_text\(|write_bytes\("""
    r"""|os\.open\(|FileSystems\.create\(|TemporaryFile\(|NamedTemporaryFile\("""
)


def test_every_writer_of_the_package_goes_through_the_private_file_helper() -> None:
    root = Path(__file__).resolve().parent.parent
    found = {}
    for path in sorted((root / "fsmigrate").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        hits = [
            f"{rel}:{number}: {line.strip()}"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if WRITES.search(line)
        ]
        if hits and rel not in NOT_DOCUMENT_DATA:
            found[rel] = hits
    # beam/workfiles.py creates remote (gs://) files through Beam: a bucket's IAM decides
    # who reads them; its local files go through the helper
    remote = found.pop("fsmigrate/beam/workfiles.py", [])
    assert all("FileSystems.create" in hit for hit in remote), remote
    # the plan file's body is spooled in an unnamed temporary file (no name: nobody can
    # open it) before the plan itself is written through the helper
    spooled = found.pop("fsmigrate/scripts/planfile.py", [])
    assert all("TemporaryFile(" in hit for hit in spooled), spooled
    assert found == {}, "files created without fsmigrate.files:\n" + "\n".join(
        hit for hits in found.values() for hit in hits
    )


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
