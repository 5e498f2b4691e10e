"""The processor_heartbeats cleanup end to end, against the real emulator."""
from __future__ import annotations

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
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def fsm(tmp_path: Path, project_id: str, emulator) -> Fsm:
    return Fsm(project_id, tmp_path / "state.db", MIGRATIONS)


def collection_state(client) -> dict[str, tuple]:
    return {s.id: (s.update_time, s.to_dict())
            for s in client.collection(heartbeats.COLLECTION).stream()}


def expected_after(docs: list[tuple[str, dict]]) -> dict[str, dt.datetime]:
    """Independent of the migration: per canonical ID, the freshest heartbeat among the
    canonical document and its processor's legacy documents."""
    best: dict[str, dt.datetime] = {}
    for doc_id, data in docs:
        found = heartbeats.classify(doc_id)
        if found.kind == heartbeats.UNKNOWN:
            continue
        beat = data["last_heartbeat"]
        best[found.canonical_id] = max(best.get(found.canonical_id, beat), beat)
    return best


def test_seeded_incident_is_cleaned_to_one_document_per_processor(fsm: Fsm, fs_client) -> None:
    docs = list(incident.documents(NOW))
    incident.seed(fs_client, NOW)
    assert len(collection_state(fs_client)) == 1053

    out = fsm.json("upgrade")

    run = out["migrations"][0]
    assert (run["revision"], run["status"], run["skipped"]) == ("0001", "succeeded", 0)
    assert run["counts"]["delete"] == 1035
    after = collection_state(fs_client)
    want = expected_after(docs)
    assert set(after) == set(want)  # only canonical documents: 18 kept + 2 created
    assert len(after) == 20
    for doc_id, (_, data) in after.items():
        assert heartbeats.classify(doc_id).kind in heartbeats.CANONICAL_KINDS
        assert data["last_heartbeat"] == want[doc_id], doc_id
    # a created canonical document carries its processor's fields and the canonical name
    created = after["PlayerPropPredictionProcessor"][1]
    assert created["processor_name"] == "PlayerPropPredictionProcessor" and "run_id" in created
    assert after["p2_nbac_player_boxscores"][1]["processor_name"] == "p2_nbac_player_boxscores"


def test_every_deleted_heartbeat_is_in_the_audit_with_its_before_image(fsm: Fsm,
                                                                      fs_client) -> None:
    incident.seed(fs_client, NOW, legacy=60)
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


def test_second_run_changes_nothing(fsm: Fsm, fs_client) -> None:
    incident.seed(fs_client, NOW, legacy=100)
    assert fsm("upgrade").exit_code == 0
    before = collection_state(fs_client)

    again = fsm("upgrade")
    rerun = fsm.json("rerun", "0001")

    assert again.exit_code == 0 and "up to date" in again.stdout
    assert rerun["migrations"][0]["planned"] == 0
    assert collection_state(fs_client) == before


def test_unknown_ids_are_left_alone_and_reported(fsm: Fsm, fs_client) -> None:
    col = fs_client.collection(heartbeats.COLLECTION)
    beat = NOW - dt.timedelta(minutes=5)
    col.document("PlayerGameSummaryProcessor").set({"last_heartbeat": beat})
    col.document("PlayerGameSummaryProcessor_None_0a1b2c3d").set({"last_heartbeat": beat})
    for odd in ("PlayerGameSummaryProcessor_None_", "p2_nba_raw.x_2024_totals",
                "Team2025Processor", "some-other-doc"):
        col.document(odd).set({"last_heartbeat": beat})

    out = fsm.json("upgrade", "--dry-run")

    notes = out["migrations"][0]["notes"]
    assert "unknown ID left alone: 'PlayerGameSummaryProcessor_None_'" in notes
    assert "unknown ID left alone: 'some-other-doc'" in notes
    assert [op["path"] for op in out["migrations"][0]["operations"]] == [
        "processor_heartbeats/PlayerGameSummaryProcessor_None_0a1b2c3d"]
    assert fsm.json("upgrade")["migrations"][0]["committed"] == 1
    assert sorted(collection_state(fs_client)) == sorted([
        "PlayerGameSummaryProcessor", "PlayerGameSummaryProcessor_None_", "Team2025Processor",
        "p2_nba_raw.x_2024_totals", "some-other-doc"])


def test_check_heartbeats_exit_codes_before_and_after(fsm: Fsm, fs_client) -> None:
    incident.seed(fs_client, NOW)

    before = fsm("check", "heartbeats", "--format", "json")

    assert before.exit_code == 1
    health = json.loads(before.stdout)
    assert (health["total"], health["legacy"], health["healthy"]) == (1053, 1035, False)
    assert health["by_kind"] == {"canonical_processor": 13, "canonical_phase2": 5,
                                 "legacy_run": 777, "legacy_date": 258, "unknown": 0}
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


def test_cleanup_script_dry_run_changes_nothing_then_apply_cleans(tmp_path: Path, emulator,
                                                                  fs_client,
                                                                  project_id: str) -> None:
    incident.seed(fs_client, NOW, legacy=120)
    before = collection_state(fs_client)
    env = {**os.environ, "FSMIGRATE_PROJECT": project_id}
    state = tmp_path / "state.db"

    dry = subprocess.run([sys.executable, str(CLEANUP), "--state", str(state)], env=env,
                         capture_output=True, text=True, cwd=tmp_path, check=False)

    assert dry.returncode == 0, dry.stderr
    assert "DRY-RUN" in dry.stdout and "planned: 120 delete" in dry.stdout
    assert "with --apply" in dry.stdout
    assert collection_state(fs_client) == before

    applied = subprocess.run([sys.executable, str(CLEANUP), "--state", str(state), "--apply",
                              "--format", "json"], env=env, capture_output=True, text=True,
                             cwd=tmp_path, check=False)

    assert applied.returncode == 0, applied.stderr
    run = json.loads(applied.stdout)["migrations"][0]
    assert run["mode"] == "apply" and run["counts"]["delete"] == 120
    assert all(not heartbeats.classify(i).is_legacy for i in collection_state(fs_client))
    history = Fsm(project_id, state, MIGRATIONS).json("history")
    assert [r["mode"] for r in history] == ["apply", "dry-run"]


def test_rerun_refuses_scripts_that_are_not_repeatable(tmp_path: Path, emulator,
                                                       project_id: str) -> None:
    from helpers import write_script

    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, "def plan(ctx):\n    return []\n")
    result = fsm("rerun", "0001")
    assert result.exit_code == 2 and "not repeatable" in result.stderr
