"""CLI contract: help with examples, one-line errors, exit codes, read-only commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fsmigrate.cli import cli
from fsmigrate.errors import ScriptImportError
from helpers import Fsm, write_script


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(cli)], ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    command = cli
    for name in path:
        command = command.commands[name]
    assert command.help and len(command.help.splitlines()[0]) > 10


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fsmigrate", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "fsmigrate" in result.stdout


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fsm:
    """A CLI with no emulator and no credentials: only commands that stay local work."""
    for var in ("FIRESTORE_EMULATOR_HOST", "FSMIGRATE_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    return Fsm("local-proj", tmp_path / "state.db", tmp_path / "migrations")


def test_usage_errors_exit_2_with_one_line(offline: Fsm) -> None:
    result = CliRunner().invoke(cli, ["status", "--local"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "FAILED: no project: pass --project or set FSMIGRATE_PROJECT"
    assert offline("upgrade", "--batch-size", "0").exit_code == 2
    assert offline("no-such-command").exit_code == 2
    unknown = offline("audit", "nope")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("FAILED: run 'nope'")
    write_script(offline.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    to = offline("upgrade", "--dry-run", "--to", "0042")
    assert to.exit_code == 2 and "revision '0042'" in to.stderr


def test_broken_scripts_fail_with_one_line_naming_the_file(offline: Fsm) -> None:
    write_script(offline.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    bad = write_script(offline.migrations, "0002", "0001", "def plan(ctx:\n")
    result = offline("status")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "SyntaxError" in lines[0]
    assert "Traceback" not in result.output
    with_tb = offline("--traceback", "status")
    assert isinstance(with_tb.exception, ScriptImportError)


def test_read_only_commands_never_create_the_state_file(offline: Fsm) -> None:
    write_script(offline.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    for args in (
        ["status", "--local"],
        ["history"],
        ["audit"],
        ["verify", "--local"],
        ["status", "--local", "--format", "json"],
    ):
        result = offline(*args)
        assert result.exit_code == 0, (args, result.output)
    assert not offline.state.exists()
    assert (
        json.loads(offline("status", "--local", "--format", "json").stdout)["revisions"][0]["state"]
        == "pending"
    )


def test_apply_on_a_real_project_asks_first(offline: Fsm) -> None:
    write_script(offline.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    result = offline("upgrade", input="n\n")
    assert result.exit_code == 1
    assert "local-proj" in result.output and "(Google Cloud)" in result.output
    assert result.stderr.strip().endswith("FAILED: declined at the prompt")


def test_new_writes_the_next_script(offline: Fsm) -> None:
    first = offline("new", "delete old sessions")
    second = offline("new", "Backfill user status!")
    assert first.exit_code == 0 and second.exit_code == 0
    files = sorted(p.name for p in offline.migrations.glob("*.py"))
    assert files == ["0001_delete_old_sessions.py", "0002_backfill_user_status.py"]
    assert 'down_revision = "0001"' in (offline.migrations / files[1]).read_text()
    status = json.loads(offline("status", "--local", "--format", "json").stdout)
    assert [r["revision"] for r in status["revisions"]] == ["0001", "0002"]


@pytest.mark.emulator
def test_emulator_commands_start_status_stop(tmp_path: Path) -> None:
    record = tmp_path / "emu.json"
    runner = CliRunner()
    started = runner.invoke(cli, ["emulator", "start", "--record", str(record)])
    try:
        assert started.exit_code == 0, started.output
        line = started.stdout.strip()
        assert line.startswith("export FIRESTORE_EMULATOR_HOST=127.0.0.1:")
        status = runner.invoke(cli, ["emulator", "status", "--record", str(record)])
        assert status.exit_code == 0 and "running" in status.stdout
        again = runner.invoke(cli, ["emulator", "start", "--record", str(record)])
        assert again.exit_code == 1 and "already running" in again.stderr
    finally:
        stopped = runner.invoke(cli, ["emulator", "stop", "--record", str(record)])
    assert stopped.exit_code == 0 and "stopped emulator pid" in stopped.stdout
    status = runner.invoke(
        cli,
        ["emulator", "status", "--record", str(record)],
        env={"FIRESTORE_EMULATOR_HOST": None},  # not the session's emulator either
    )
    assert status.exit_code == 1 and "not running" in status.stdout
    refused = runner.invoke(
        cli, ["emulator", "start", "--host", "10.1.2.3", "--record", str(record)]
    )
    assert refused.exit_code == 2


def test_text_tables_use_a_wider_terminal_and_stay_at_100_columns_in_a_pipe(
    tmp_path: Path,
) -> None:
    """`status` and `history` cut a line at 100 columns for a pipe or a file (what a script
    reads does not depend on the terminal), and use the width of a wider terminal."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    description = "Backfill the " + "very " * 12 + "long description"  # 56 + 90 columns
    write_script(tmp_path / "migrations", "0001", None, "def plan(ctx):\n    return []\n")
    script = next((tmp_path / "migrations").glob("0001_*.py"))
    script.write_text(f'"""{description}."""\n' + script.read_text())
    argv = [
        sys.executable, "-m", "fsmigrate", "--project", "p", "--state", str(tmp_path / "s.db"),
        "--migrations", str(tmp_path / "migrations"), "status", "--local",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

    piped = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    row = next(line for line in piped.splitlines() if "0001" in line)
    assert len(row) == 100 and row.endswith("…")

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end closed: all read
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    row = next(line for line in out.decode().splitlines() if "0001" in line)
    assert description in row and not row.rstrip().endswith("…")
