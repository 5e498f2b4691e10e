"""The config key `create-state-dir`: a team's `state = ".fsmigrate/state.db"` works in a
fresh checkout when the file says to make the directory, and is refused when it does not
(a typo in a path must not start a fresh audit trail)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsmigrate.cli import cli
from fsmigrate.firestore import emulator as emu_mod
from helpers import write_script


def _checkout(root: Path, project: str, extra: str) -> Path:
    """A fresh checkout: a pyproject.toml naming a state file in a missing directory."""
    (root / "pyproject.toml").write_text(
        f'[tool.fsmigrate]\nproject = "{project}"\nstate = ".fsmigrate/state.db"\n{extra}'
    )
    write_script(root / "migrations", "0001", None, "def plan(ctx):\n    return []\n")
    return root


@pytest.mark.parametrize("where", ["top", "environment"])
def test_the_config_file_can_make_the_state_file_s_directory(
    tmp_path: Path, project_id: str, emulator: emu_mod.Emulator, monkeypatch, where: str
) -> None:
    extra = "create-state-dir = true\n"
    if where == "environment":
        extra = f'[tool.fsmigrate.env.ci]\nproject = "{project_id}"\n{extra}'
    root = _checkout(tmp_path, project_id, extra)
    monkeypatch.chdir(root)
    env = {"FIRESTORE_EMULATOR_HOST": emulator.host_port}
    args = ["--env", "ci"] if where == "environment" else []

    result = CliRunner().invoke(cli, [*args, "upgrade", "--dry-run", "--quiet"], env=env)

    assert result.exit_code == 0, result.output
    assert (root / ".fsmigrate" / "state.db").exists()
    shown = CliRunner().invoke(cli, [*args, "config"], env=env)
    assert re.search(r"^  create-state-dir +true ", shown.stdout, re.M), shown.stdout


def test_without_the_key_a_missing_directory_is_still_refused(
    tmp_path: Path, project_id: str, emulator: emu_mod.Emulator, monkeypatch
) -> None:
    root = _checkout(tmp_path, project_id, "")
    monkeypatch.chdir(root)
    env = {"FIRESTORE_EMULATOR_HOST": emulator.host_port}

    result = CliRunner().invoke(cli, ["upgrade", "--dry-run", "--quiet"], env=env)

    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (root / ".fsmigrate").exists()
    bad = root / "pyproject.toml"
    bad.write_text(bad.read_text() + 'create-state-dir = "yes"\n')
    refused = CliRunner().invoke(cli, ["status"], env=env)
    assert refused.exit_code == 2 and "create-state-dir must be true or false" in refused.stderr


def test_config_from_file_reads_the_key_as_the_command_line_does(
    tmp_path: Path, monkeypatch
) -> None:
    from fsmigrate import api

    root = _checkout(tmp_path, "p", "create-state-dir = true\n")
    monkeypatch.chdir(root)

    assert api.Config.from_file().create_state_dir is True
    (root / "pyproject.toml").write_text('[tool.fsmigrate]\nproject = "p"\n')
    assert api.Config.from_file().create_state_dir is False
