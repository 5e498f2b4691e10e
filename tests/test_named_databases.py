"""Two named databases of one project, migrated independently on the real emulator:
markers, the lease, the state file's records, status, status --check, a health check, a
Beam run and the pytest plugin's harness each keep to their own database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fsmigrate import api
from fsmigrate.engine.lease import Lease
from fsmigrate.firestore.store import Store, Target
from fsmigrate.state.database import State
from helpers import Fsm, write_script

SEED_ITEMS = """
def plan(ctx):
    for i in range(4):
        yield ctx.set(f"items/i{i}", {"n": i})
"""
BUMP = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.update(doc, {"n": doc.get("n") + 100})
"""


def client(project: str, database: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


def docs(project: str, database: str, collection: str) -> dict[str, dict]:
    c = client(project, database)
    try:
        return {s.id: s.to_dict() for s in c.collection(collection).stream()}
    finally:
        c.close()


@pytest.fixture
def fsm(tmp_path: Path, project_id: str, emulator) -> Fsm:
    write_script(tmp_path / "migrations", "0001", None, SEED_ITEMS)
    return Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")


def test_two_databases_are_migrated_independently(fsm: Fsm, project_id: str) -> None:
    alpha, beta = ("--database", "alpha"), ("--database", "beta")
    result = fsm(*alpha, "upgrade")
    assert result.exit_code == 0, result.output
    # data and markers: alpha only (and nothing in the default database)
    assert docs(project_id, "alpha", "items") == {f"i{i}": {"n": i} for i in range(4)}
    assert docs(project_id, "beta", "items") == {}
    assert docs(project_id, "(default)", "items") == {}
    assert set(docs(project_id, "alpha", "_fsmigrate/meta/revisions")) == {"0001"}
    assert docs(project_id, "beta", "_fsmigrate/meta/revisions") == {}
    # the state file's records are per database
    state = State.open(fsm.state)
    try:
        assert set(state.applied(project_id, "alpha")) == {"0001"}
        assert state.applied(project_id, "beta") == {}
        assert {r["database"] for r in state.runs()} == {"alpha"}
    finally:
        state.close()
    # status and the CI gate, per database
    states = {
        db: [r["state"] for r in fsm.json("--database", db, "status")["revisions"]]
        for db in ("alpha", "beta")
    }
    assert states == {"alpha": ["applied"], "beta": ["pending"]}
    assert fsm(*alpha, "status", "--check").exit_code == 0
    assert fsm(*beta, "status", "--check").exit_code == 1
    assert fsm.json(*beta, "history")["runs"] == []
    # beta's own migration, later: its own records and marker
    assert fsm(*beta, "upgrade").exit_code == 0
    assert fsm(*beta, "status", "--check").exit_code == 0
    alpha_runs = fsm.json(*alpha, "history")["runs"]
    beta_runs = fsm.json(*beta, "history")["runs"]
    assert len(alpha_runs) == len(beta_runs) == 1
    assert alpha_runs[0]["run_id"] != beta_runs[0]["run_id"]
    alpha_marker = docs(project_id, "alpha", "_fsmigrate/meta/revisions")["0001"]
    beta_marker = docs(project_id, "beta", "_fsmigrate/meta/revisions")["0001"]
    assert alpha_marker["run_id"] == alpha_runs[0]["run_id"]
    assert beta_marker["run_id"] == beta_runs[0]["run_id"]


def test_the_lease_of_one_database_does_not_hold_the_other(fsm: Fsm, project_id: str) -> None:
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    lease = Lease(Store(Target(project_id, "alpha", host)), "held by the test").acquire()
    try:
        held = fsm("--database", "alpha", "upgrade")
        assert held.exit_code == 3, held.output
        assert "holds the lock on project " + project_id + ", database alpha" in held.stderr
        free = fsm("--database", "beta", "upgrade")
        assert free.exit_code == 0, free.output
    finally:
        lease.release()
    assert docs(project_id, "alpha", "items") == {}
    assert fsm("--database", "alpha", "upgrade").exit_code == 0


def test_a_health_check_reads_its_own_database(fsm: Fsm, project_id: str) -> None:
    c = client(project_id, "alpha")
    try:
        for i in range(3):
            c.document(f"processor_heartbeats/legacy_{i}").set({"last_heartbeat": None})
    finally:
        c.close()
    totals = {
        db: fsm.json("--database", db, "check", "heartbeats")["total"] for db in ("alpha", "beta")
    }
    assert totals == {"alpha": 3, "beta": 0}


def test_a_beam_run_on_a_named_database(tmp_path: Path, project_id: str, emulator) -> None:
    pytest.importorskip("apache_beam", reason="the beam extra is not installed")
    write_script(tmp_path / "migrations", "0001", None, SEED_ITEMS)
    write_script(tmp_path / "migrations", "0002", "0001", BUMP)
    cfgs = {
        db: api.Config(
            project=project_id,
            database=db,
            state=tmp_path / "state.db",
            migrations=tmp_path / "migrations",
        )
        for db in ("alpha", "beta")
    }
    for db in ("alpha", "beta"):
        api.upgrade(cfgs[db], to="0001").state.close()
    done = api.upgrade(cfgs["beta"], api.RunOptions(runner="beam", workers=2))
    assert [(r.revision, r.committed) for r in done.runs] == [("0002", 4)]
    done.state.close()
    assert docs(project_id, "beta", "items") == {f"i{i}": {"n": i + 100} for i in range(4)}
    assert docs(project_id, "alpha", "items") == {f"i{i}": {"n": i} for i in range(4)}
    assert [r.state for r in api.status(cfgs["alpha"]).revisions] == ["applied", "pending"]
    assert [r.state for r in api.status(cfgs["beta"]).revisions] == ["applied", "applied"]
    assert set(docs(project_id, "beta", "_fsmigrate/meta/revisions")) == {"0001", "0002"}
    assert set(docs(project_id, "alpha", "_fsmigrate/meta/revisions")) == {"0001"}


# ---- the pytest plugin's harness on a named database ------------------------------------------


@pytest.fixture
def fsmigrate_migrations(tmp_path: Path) -> Path:
    write_script(tmp_path / "plugin-migrations", "0001", None, SEED_ITEMS)
    return tmp_path / "plugin-migrations"


@pytest.fixture
def fsmigrate_database() -> str:
    return "beta"


def test_the_harness_works_on_a_named_database(fsmigrate: Any) -> None:
    assert fsmigrate.database == "beta"
    done = fsmigrate.upgrade()
    assert [r.revision for r in done.runs] == ["0001"]
    assert fsmigrate.docs("items") == {f"i{i}": {"n": i} for i in range(4)}
    assert docs(fsmigrate.project, "(default)", "items") == {}
    assert "_fsmigrate/meta/revisions/0001" in fsmigrate.snapshot()
    assert json.loads(json.dumps(done.runs[0].to_json()))["database"] == "beta"


# the plugin's own built-in tests, run here against the named database
from fsmigrate.testing.checks import test_dry_run_matches_apply, test_plan_never_writes  # noqa: E402

__all__ = ["test_dry_run_matches_apply", "test_plan_never_writes"]
