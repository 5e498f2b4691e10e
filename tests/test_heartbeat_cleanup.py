"""The processor_heartbeats cleanup through the command line, its audit, its health check
and its operators' script, against the real emulator. (The migration itself is tested
with the pytest plugin, as a team would: test_migration_0001.py.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fsmigrate import heartbeats
from fsmigrate.heartbeats import incident
from helpers import Fsm

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
CLEANUP = ROOT / "bin" / "cleanup-heartbeat-docs.py"


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    """The project's own migrations (0001: the heartbeat cleanup)."""
    return dataclasses.replace(fsm, migrations=MIGRATIONS)


def collection_state(client) -> dict[str, tuple]:
    return {
        s.id: (s.update_time, s.to_dict())
        for s in client.collection(heartbeats.COLLECTION).stream()
    }


def test_every_deleted_heartbeat_is_in_the_audit_with_its_before_image(fsm: Fsm, fs_client) -> None:
    incident.seed(fs_client, dt.datetime.now(dt.timezone.utc), legacy=60)
    original = collection_state(fs_client)
    run_id = fsm.json("upgrade")["migrations"][0]["run_id"]

    audit = fsm("audit", run_id, "--format", "jsonl")

    assert audit.exit_code == 0
    ops = [json.loads(line) for line in audit.stdout.splitlines()]
    deleted = {op["path"].split("/", 1)[1]: op for op in ops if op["kind"] == "delete"}
    legacy = {i for i in original if heartbeats.classify(i).is_legacy}
    assert set(deleted) == legacy
    for doc_id, op in deleted.items():
        assert op["status"] == "committed"
        assert op["before"]["fields"]["processor_name"] == original[doc_id][1]["processor_name"]
        assert op["before"]["fields"]["run_id"] == original[doc_id][1]["run_id"]


def test_check_heartbeats_exit_codes_before_and_after(fsm: Fsm, fs_client) -> None:
    # seeded as of now, not of the module's import: the check's 1h window is measured
    # from now, and a long session must not age the incident's last hour out of it
    incident.seed(fs_client, dt.datetime.now(dt.timezone.utc))

    before = fsm("check", "heartbeats", "--format", "json")

    assert before.exit_code == 1
    health = json.loads(before.stdout)
    assert (health["total"], health["legacy"], health["healthy"]) == (1053, 1035, False)
    assert health["by_kind"] == {
        "canonical_processor": 13,
        "canonical_phase2": 5,
        "legacy_run": 777,
        "legacy_date": 258,
        "unknown": 0,
    }
    assert len(health["legacy_in_window"]) == 37  # the incident's last hour
    assert health["growth_per_day"] == 37 * 24
    line = before.stderr.strip()
    assert line.startswith("UNHEALTHY: 1053 documents") and "\n" not in line

    assert fsm("upgrade").exit_code == 0
    after = fsm("check", "heartbeats", "--format", "json")

    assert after.exit_code == 0, after.output
    health = json.loads(after.stdout)
    assert (health["total"], health["legacy"], health["healthy"]) == (20, 0, True)
    assert health["reasons"] == [] and health["growth_per_day"] == 0
    over = fsm("check", "heartbeats", "--max-docs", "19")
    assert over.exit_code == 1 and "more than the 19 allowed" in over.stderr
    assert fsm("check", "heartbeats", "--window", "1y").exit_code == 2


def test_cleanup_script_dry_run_changes_nothing_then_apply_cleans(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    incident.seed(fs_client, dt.datetime.now(dt.timezone.utc), legacy=120)
    before = collection_state(fs_client)
    env = {**os.environ, "FSMIGRATE_PROJECT": project_id}
    state = tmp_path / "state.db"

    dry = subprocess.run(
        [sys.executable, str(CLEANUP), "--state", str(state)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert dry.returncode == 0, dry.stderr
    assert "DRY-RUN" in dry.stdout and "planned: 120 delete" in dry.stdout
    assert "with --apply" in dry.stdout
    assert collection_state(fs_client) == before

    applied = subprocess.run(
        [sys.executable, str(CLEANUP), "--state", str(state), "--apply", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert applied.returncode == 0, applied.stderr
    run = json.loads(applied.stdout)["migrations"][0]
    assert run["mode"] == "apply" and run["counts"]["delete"] == 120
    assert all(not heartbeats.classify(i).is_legacy for i in collection_state(fs_client))
    history = Fsm(project_id, state, MIGRATIONS).json("history")["runs"]
    assert [r["mode"] for r in history] == ["apply", "dry-run"]


def test_rerun_refuses_scripts_that_are_not_repeatable(
    tmp_path: Path, emulator, project_id: str
) -> None:
    from helpers import write_script

    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    result = fsm("rerun", "0001")
    assert result.exit_code == 2 and "not repeatable" in result.stderr
