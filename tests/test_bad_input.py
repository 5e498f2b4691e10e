"""Bad input is refused with one line, a documented exit code, and nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fsmigrate.state.database import State
from fsmigrate.state.schema import SCHEMA_VERSION
from helpers import Fsm, seed_docs, write_script

GOOD = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
"""


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("FAILED: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def fsm(fsm: Fsm, fs_client) -> Fsm:
    seed_docs(fs_client, {f"items/i{i}": {"n": i} for i in range(5)})
    return fsm


def items(fs_client) -> int:
    return len(list(fs_client.collection("items").list_documents()))


SCRIPT_PROBLEMS = {
    "syntax error": [("0001", None, "def plan(ctx:\n")],
    "missing down_revision": [("0001", None, GOOD), ("0002", "0009", GOOD)],
    "two heads": [("0001", None, GOOD), ("0002", "0001", GOOD), ("0003", "0001", GOOD)],
    "no plan": [("0001", None, "x = 1\n")],
}


@pytest.mark.parametrize("problem", sorted(SCRIPT_PROBLEMS))
def test_broken_migration_scripts(fsm: Fsm, fs_client, problem: str) -> None:
    for rev, down, body in SCRIPT_PROBLEMS[problem]:
        write_script(fsm.migrations, rev, down, body)
    result = fsm("upgrade")
    assert result.exit_code == 1
    assert str(fsm.migrations) in one_line(result)
    assert items(fs_client) == 5


@pytest.mark.parametrize("name", ["0002-bad-name.py", "abc.py", "0002_x.PY", "00002_x.py"])
def test_misnamed_script_is_refused_by_every_command(fsm: Fsm, fs_client, name: str) -> None:
    """A `.py` file that is not `NNNN_slug.py` (nor `_helper.py`) is never skipped in silence."""
    write_script(fsm.migrations, "0001", None, GOOD)
    bad = fsm.migrations / name
    bad.write_text('"""Never runs."""\nrevision = "0002"\ndown_revision = "0001"\n' + GOOD)
    for args in (
        ["status"],
        ["status", "--local"],
        ["verify"],
        ["verify", "--local"],
        ["upgrade", "--dry-run"],
        ["upgrade"],
        ["new", "next step"],
    ):
        result = fsm(*args)
        assert result.exit_code == 1, (args, result.output)
        line = one_line(result)
        assert str(bad) in line and "NNNN_slug.py" in line, (args, line)
        assert not result.stdout, args
    assert items(fs_client) == 5
    assert not fsm.state.exists()
    assert sorted(p.name for p in fsm.migrations.iterdir()) == sorted(["0001_test_0001.py", name])


def test_duplicate_revision(fsm: Fsm, fs_client) -> None:
    write_script(fsm.migrations, "0001", None, GOOD)
    (fsm.migrations / "0001_again.py").write_text(
        '"""Again."""\nrevision = "0001"\ndown_revision = None\n' + GOOD
    )
    result = fsm("upgrade")
    assert result.exit_code == 1 and "more than one script" in one_line(result)
    assert items(fs_client) == 5


@pytest.mark.parametrize(
    "body,message",
    [
        ("def plan(ctx):\n    yield {'delete': 'items/i0'}\n", "not an operation"),
        (
            "def plan(ctx):\n    yield ctx.delete(ctx.get('items/i0'))\n"
            "    yield ctx.set('items', {'x': 1})\n",
            "collection path",
        ),
        (
            "def plan(ctx):\n    yield ctx.create('items/x', {'bad': object()})\n",
            "create of items/x",
        ),
    ],
)
def test_bad_operations_stop_the_run_before_anything_is_written(
    fsm: Fsm, fs_client, body: str, message: str
) -> None:
    write_script(fsm.migrations, "0001", None, body)
    result = fsm("upgrade")
    assert result.exit_code == 1
    assert message in one_line(result)
    assert items(fs_client) == 5
    assert fsm.json("status")["revisions"][0]["state"] == "failed"
    blocked = fsm("upgrade")  # a migration bug blocks until fixed or resolved
    assert blocked.exit_code == 1 and "fix the script" in one_line(blocked)


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 100)


def garbled(path: Path) -> None:
    State.open(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))


def foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()


def newer(path: Path) -> None:
    State.open(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [garbage, garbled, foreign, newer], ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", [["upgrade"], ["history"], ["audit"], ["status"]])
def test_unusable_state_files(fsm: Fsm, fs_client, damage, command: list[str]) -> None:
    write_script(fsm.migrations, "0001", None, GOOD)
    damage(fsm.state)
    before = fsm.state.read_bytes()
    result = fsm(*command)
    assert result.exit_code == 1, result.output
    line = one_line(result)
    assert str(fsm.state) in line
    assert items(fs_client) == 5
    assert fsm.state.read_bytes() == before


def test_unreachable_emulator(tmp_path: Path, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("FSMIGRATE_PATIENCE", "1")
    monkeypatch.setenv("FSMIGRATE_RETRY_INITIAL", "0.05")
    fsm = Fsm("nowhere", tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, GOOD)
    for args in (["upgrade", "--dry-run"], ["upgrade"], ["check", "heartbeats"]):
        result = fsm(*args)
        assert result.exit_code == 1, result.output
        line = one_line(result)
        assert "ServiceUnavailable" in line and "without progress, --patience 1s" in line


@pytest.mark.parametrize(
    "args", [["--batch-size", "0"], ["--batch-size", "501"], ["--to", "0042"], ["--format", "yaml"]]
)
def test_bad_options_exit_2(fsm: Fsm, fs_client, args: list[str]) -> None:
    write_script(fsm.migrations, "0001", None, GOOD)
    assert fsm("upgrade", *args).exit_code == 2
    assert items(fs_client) == 5


def test_a_full_disk_says_to_free_space_not_to_restore_a_backup() -> None:
    """SQLite's "database or disk is full" is not damage: the same command finishes once
    there is room (issue 22)."""
    from fsmigrate.errors import StateCorrupt

    full = str(StateCorrupt(Path("tiny/state.db"), "database or disk is full"))
    damaged = str(StateCorrupt(Path("state.db"), "file is not a database"))

    assert "free space on its disk, then run the same command again" in full
    assert "backup" not in full and "\n" not in full
    assert "restore it from a backup" in damaged
