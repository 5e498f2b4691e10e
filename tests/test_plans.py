"""Reviewed plans: `upgrade --dry-run --plan-out` then `apply PLAN`, exactly as reviewed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import Fsm, write_script

CLEANUP = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 2:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": doc.get("n") + 100})
"""


def seed(client, n: int) -> None:
    for start in range(0, n, 500):
        batch = client.batch()
        for i in range(start, min(n, start + 500)):
            batch.set(client.document(f"items/i{i:05d}"), {"n": i})
        batch.commit()


@pytest.fixture
def fsm(tmp_path: Path, project_id: str, emulator) -> Fsm:
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, CLEANUP)
    return fsm


def state_of(client) -> dict[str, int]:
    return {s.id: s.get("n") for s in client.collection("items").stream()}


def test_plan_then_apply_does_exactly_the_plan(fsm: Fsm, fs_client, tmp_path) -> None:
    seed(fs_client, 10)
    plan = tmp_path / "plan.jsonl"
    made = fsm("upgrade", "--dry-run", "--plan-out", str(plan))
    assert made.exit_code == 0, made.output
    lines = plan.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["project"] == fsm.project and header["migrations"][0]["operations"] == 10
    assert len(lines) == 11 and state_of(fs_client) == {f"i{i:05d}": i for i in range(10)}

    # a document changes after the plan was reviewed: exactly that operation is skipped
    fs_client.document("items/i00004").update({"n": 4000})
    out = fsm.json("apply", str(plan))

    run = out["migrations"][0]
    assert (run["kind"], run["committed"], run["skipped"]) == ("plan", 9, 1)
    assert [op["path"] for op in run["operations"] if op["status"] == "skipped"] == [
        "items/i00004"]
    expected = {f"i{i:05d}": i + 100 for i in range(0, 10, 2)}
    expected["i00004"] = 4000
    assert state_of(fs_client) == expected
    assert fsm.json("status")["revisions"][0]["state"] == "applied"
    assert run["notes"][0].startswith(f"applies plan {header['plan_id']}")
    ticket = fsm("audit", run["run_id"], "--format", "markdown").stdout
    assert f"applied the reviewed plan `{header['plan_id']}` exactly" in ticket
    assert header["migrations"][0]["dry_run"] in ticket
    again = fsm("apply", str(plan))
    assert again.exit_code == 2 and "already applied" in again.stderr


def test_apply_refuses_a_changed_script_or_another_target(fsm: Fsm, fs_client,
                                                         tmp_path) -> None:
    seed(fs_client, 4)
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan)).exit_code == 0
    other = Fsm(fsm.project + "-x", fsm.state, fsm.migrations)
    wrong = other("apply", str(plan))
    assert wrong.exit_code == 2 and "is a plan for" in wrong.stderr
    script = fsm.migrations / "0001_test_0001.py"
    script.write_text(script.read_text() + "\n# edited after review\n")
    changed = fsm("apply", str(plan))
    assert changed.exit_code == 1 and "changed since plan" in changed.stderr
    assert state_of(fs_client) == {f"i{i:05d}": i for i in range(4)}
    assert fsm("upgrade", "--plan-out", str(plan)).exit_code == 2  # needs --dry-run
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{}\n")
    assert fsm("apply", str(junk)).exit_code == 2


def test_plan_of_many_operations_streams_and_resumes_after_a_crash(fsm: Fsm, fs_client,
                                                                   tmp_path) -> None:
    seed(fs_client, 3000)
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--quiet").exit_code == 0
    args = [sys.executable, "-m", "fsmigrate", "--project", fsm.project, "--state",
            str(fsm.state), "--migrations", str(fsm.migrations), "apply", str(plan), "--quiet"]
    killed = subprocess.run(args, env={**os.environ, "FSMIGRATE_TEST_CRASH": "after-commit:3"},
                            capture_output=True, text=True, check=False)
    assert killed.returncode == -signal.SIGKILL

    resumed = subprocess.run(args, capture_output=True, text=True, check=False)

    assert resumed.returncode == 0, resumed.stderr
    assert state_of(fs_client) == {f"i{i:05d}": i + 100 for i in range(0, 3000, 2)}
    history = fsm.json("history")
    assert [(r["kind"], r["status"]) for r in history[:2]] == [
        ("plan", "succeeded"), ("plan", "interrupted")]
