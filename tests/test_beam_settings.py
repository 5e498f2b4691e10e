"""Beam workers get the run's settings: its connection (endpoint, quota project, service
account to impersonate, emulator; never a credentials file), its patience and timeouts;
each DoFn's teardown closes the channels its worker opened."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

from fsmigrate import api
from fsmigrate.beam import pipeline as bp
from fsmigrate.firestore.connection import Connection
from fsmigrate.firestore.store import RetryPolicy
from helpers import items_of, seed_items, write_script

EACH = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""


def spec_of(tmp_path: Path, project: str, **given: Any) -> bp.WorkerSpec:
    script = write_script(tmp_path / "migrations", "0001", None, EACH)
    return bp.WorkerSpec(
        project=project,
        database="(default)",
        emulator_host=given.get("connection", Connection()).emulator_host,
        markers_root="_fsmigrate",
        revision="0001",
        script_path=str(script),
        script_source=script.read_bytes(),
        journal_dir=str(tmp_path / "journal"),
        dry_run=True,
        capture_writes=False,
        batch_size=500,
        batch_bytes=4_000_000,
        buckets=2,
        lease_holder=None,
        **given,
    )


def test_a_workers_store_has_the_runs_settings_and_its_teardown_closes_it(
    tmp_path: Path, project_id: str, emulator
) -> None:
    connection = Connection(
        emulator_host=emulator.host_port,
        quota_project="billing",
        impersonate_service_account="sa@p.iam.gserviceaccount.com",
        credentials="/launcher/only/key.json",
    )
    policy = RetryPolicy(patience=90.0, timeout=45.0, stream_timeout=300.0, initial=0.5)
    spec = spec_of(tmp_path, project_id, connection=connection.for_workers(), policy=policy)
    assert pickle.loads(pickle.dumps(spec)) == spec  # it travels to Dataflow

    store = bp._worker_store(spec)
    assert store.connection == Connection(
        emulator_host=emulator.host_port,
        quota_project="billing",
        impersonate_service_account="sa@p.iam.gserviceaccount.com",
    )  # no credentials file: the worker's own environment's credentials
    assert store.policy == policy
    assert store.get("items/none") is None
    store.close()

    fn = bp.ApplyEach(spec)
    fn.setup()
    assert fn.w.store.get("items/none") is None
    assert fn.w.store.channels.opened == 2
    fn.teardown()
    assert fn.w.store.channels.closed and fn.w.store.channels.opened == 0
    bp.ApplyEach(spec).teardown()  # a DoFn whose setup never ran: nothing to close


def test_without_the_runs_settings_a_worker_uses_its_environment(
    tmp_path: Path, project_id: str, emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "33")
    store = bp._worker_store(spec_of(tmp_path, project_id, patience=120.0))
    assert (store.policy.timeout, store.policy.patience) == (33.0, 120.0)
    assert store.connection.emulator_host == emulator.host_port  # FIRESTORE_EMULATOR_HOST
    store.close()


def test_the_coordinator_gives_its_workers_the_connection_and_timeouts(
    tmp_path: Path, project_id: str, emulator, fs_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_items(fs_client, 20)
    write_script(tmp_path / "migrations", "0001", None, EACH)
    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "45")
    specs: list[bp.WorkerSpec] = []
    build = bp.build

    def recording(pipeline: Any, spec: bp.WorkerSpec, *args: Any) -> None:
        specs.append(spec)
        build(pipeline, spec, *args)

    monkeypatch.setattr(bp, "build", recording)
    cfg = api.Config(
        project=project_id,
        state=tmp_path / "state.db",
        migrations=tmp_path / "migrations",
        patience="90s",
        connection=api.Connection(quota_project="billing", credentials="/launcher/key.json"),
    )
    run = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2)).runs[0]

    assert run.committed == 20 and items_of(fs_client) == {f"i{i:05d}": i + 1000 for i in range(20)}
    [spec] = specs  # the DirectRunner's workers are this machine's: the file's path too
    assert spec.connection == Connection(
        emulator_host=emulator.host_port, quota_project="billing", credentials="/launcher/key.json"
    )
    assert spec.policy is not None
    assert (spec.policy.patience, spec.policy.timeout) == (90.0, 45.0)


def test_workers_get_the_credentials_file_only_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    given = Connection(credentials="key.json", quota_project="billing")

    assert given.for_workers() == Connection(quota_project="billing")  # Dataflow: its own
    here = given.for_workers(same_machine=True)  # the DirectRunner's processes
    assert here == Connection(credentials=str(tmp_path / "key.json"), quota_project="billing")
    assert bp.runs_here({}) and bp.runs_here({"runner": "DirectRunner"})
    assert not bp.runs_here({"runner": "DataflowRunner"})
    assert not bp.runs_here({"runner": "PortableRunner"})
