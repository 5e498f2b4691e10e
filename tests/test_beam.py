"""The Beam runner (`--runner beam`): DirectRunner in multi_processing mode, 2 worker
processes, against the real emulator. Same preconditions, archive, audit and markers as
the local runner; a killed worker is finished by running the same command again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings(  # Beam's threads, when a worker is killed
    "ignore::pytest.PytestUnhandledThreadExceptionWarning"
)
pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

from fsmigrate import api
from fsmigrate.errors import FsMigrateError, UsageError
from fsmigrate.heartbeats import incident
from helpers import Fsm, seed_items, write_script
from helpers import items_of as items

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)

BUMP = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    if doc.get("n") % 3 == 0:
        yield ctx.delete(doc)
    else:
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
    ctx.count("seen")

def finish(ctx, counts):
    ctx.note(f"seen {counts.get('seen', 0)} documents")
"""


def expected_items(n: int) -> dict[str, int]:
    return {f"i{i:05d}": i + 1000 for i in range(n) if i % 3}


def heartbeat_docs(client) -> dict[str, dict]:
    return {s.id: s.to_dict() for s in client.collection("processor_heartbeats").stream()}


def ops_of(cfg: api.Config, run_id: str) -> list[tuple]:
    """(kind, path, status, archived) of every operation of a run, from its audit."""
    audit = api.audit(cfg, run_id)
    ops = [json.loads(line) for line in "".join(audit.chunks("jsonl")).splitlines()]
    return sorted((op["kind"], op["path"], op["status"], op["before"] is not None) for op in ops)


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator) -> api.Config:
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def test_per_document_migration_over_many_ranges_handles_each_document_once(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, 3000)

    dry = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2), dry_run=True)
    result = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=100))

    assert dry.runs[0].planned == 3000 and dry.runs[0].counts["delete"] == 1000
    run = result.runs[0]
    assert (run.status, run.planned, run.committed, run.skipped) == ("succeeded", 3000, 3000, 0)
    ranges = int(run.notes[0].split()[1])
    assert ranges >= 3  # split by document-name ranges (the emulator has no PartitionQuery)
    assert "seen 3000 documents" in run.notes  # counters summed over every worker
    assert items(fs_client) == expected_items(3000)  # n + 1000: applied exactly once
    rows = ops_of(cfg, run.run_id)
    assert len({path for _, path, _, _ in rows}) == 3000 == len(rows)  # no gap, no duplicate
    assert all(archived for kind, _, _, archived in rows)
    assert [r.state for r in api.status(cfg).revisions] == ["applied"]  # marker and record


@pytest.mark.long
@pytest.mark.parametrize("legacy", [1035, 20_000])  # the incident, and a bigger one
def test_the_heartbeat_cleanup_ends_the_same_on_both_runners(
    tmp_path: Path, emulator, fs_client, legacy: int
) -> None:
    from google.cloud import firestore

    results = {}
    for runner in ("local", "beam"):
        project = f"{fs_client.project}-{runner}"
        client = firestore.Client(project=project)
        incident.seed(client, NOW, legacy=legacy)
        cfg = api.Config(
            project=project, state=tmp_path / f"{runner}.db", migrations=ROOT / "migrations"
        )
        run = api.upgrade(cfg, api.RunOptions(runner=runner, workers=2)).runs[0]
        deleted = [
            p
            for kind, p, status, archived in ops_of(cfg, run.run_id)
            if kind == "delete" and status == "committed" and archived
        ]
        results[runner] = (
            heartbeat_docs(client),
            run.counts,
            run.committed,
            run.skipped,
            sorted(deleted),
            sorted(n for n in run.notes if not n.startswith("beam:")),
        )
        client.close()

    local, beam = results["local"], results["beam"]
    assert beam[0] == local[0] and len(local[0]) == 20  # the same documents, field for field
    assert beam[1:5] == local[1:5]  # counts, committed, skipped, every deleted doc archived
    assert beam[5] == local[5]  # the same notes (per processor, totals, formats)


def test_a_document_changed_between_plan_and_commit_on_a_worker_is_skipped(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, 40)
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
from google.cloud import firestore
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    if doc.id == "i00007":  # another writer changes it after the worker read it
        firestore.Client(project=ctx.project).document(doc.path).update({"n": -7})
    yield ctx.update(doc, {"n": doc.get("n") + 1000})
""",
    )

    run = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2)).runs[0]

    assert (run.committed, run.skipped) == (39, 1)
    assert items(fs_client)["i00007"] == -7  # not clobbered
    audit = "".join(api.audit(cfg, run.run_id).chunks("text"))
    assert "items/i00007  (changed since plan)" in audit


def test_a_killed_worker_fails_the_run_and_the_same_command_finishes_it(
    cfg: api.Config, fs_client, monkeypatch
) -> None:
    seed_items(fs_client, 2400)
    monkeypatch.setenv("FSMIGRATE_TEST_CRASH", "after-commit:2")  # in the worker processes

    with pytest.raises(FsMigrateError) as caught:
        api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=100))

    assert "Beam pipeline failed" in str(caught.value)
    failed = caught.value.partial.runs[0]
    assert failed.status == "failed" and 0 < failed.committed < 2400
    monkeypatch.delenv("FSMIGRATE_TEST_CRASH")

    finished = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=100)).runs[0]

    assert finished.status == "succeeded" and finished.resumes == failed.run_id
    assert items(fs_client) == expected_items(2400)  # nothing applied twice, nothing missed
    committed = [
        op
        for run in (failed.run_id, finished.run_id)
        for op in ops_of(cfg, run)
        if op[2] == "committed"
    ]
    assert len(committed) == 2400 == len({path for _, path, _, _ in committed})
    deleted = [op for op in committed if op[0] == "delete"]
    assert len(deleted) == 800 and all(archived for *_, archived in deleted)  # archived once
    assert [r.state for r in api.status(cfg).revisions] == ["applied"]


def test_dry_run_through_beam_writes_a_plan_that_applies(
    cfg: api.Config, fs_client, tmp_path
) -> None:
    seed_items(fs_client, 300)
    plan = tmp_path / "plan.jsonl"

    dry = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2), dry_run=True, plan_out=plan)

    assert dry.plan is not None and dry.plan.operations == 300
    assert items(fs_client) == {f"i{i:05d}": i for i in range(300)}
    applied = api.apply_plan(cfg, plan).runs[0]
    assert (applied.committed, applied.skipped) == (300, 0)
    assert items(fs_client) == expected_items(300)


def test_a_plan_that_cannot_be_split_is_refused_and_the_cli_says_why(
    tmp_path, project_id, emulator
) -> None:
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(
        fsm.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
""",
    )

    out = fsm("upgrade", "--runner", "beam")

    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "cannot be split" in out.stderr and "--runner local" in out.stderr
    assert not (tmp_path / "state.db.journal").exists()
    with pytest.raises(UsageError, match="--beam-option needs --runner beam"):
        api.upgrade(
            api.Config(project=project_id, state=tmp_path / "s.db", migrations=fsm.migrations),
            api.RunOptions(beam_options={"a": "b"}),
        )


def test_the_beam_run_refuses_when_another_runner_holds_the_lock(
    cfg: api.Config, fs_client, tmp_path
) -> None:
    from fsmigrate.engine.lease import Lease
    from fsmigrate.firestore.store import Store

    seed_items(fs_client, 10)
    held = Lease(Store(cfg.target()), "upgrade elsewhere").acquire()
    try:
        fsm = Fsm(cfg.project, cfg.state_path, cfg.migrations_path)
        out = fsm("upgrade", "--runner", "beam", "--workers", "2")
    finally:
        held.release()
    assert out.exit_code == 3, out.output
    assert items(fs_client) == {f"i{i:05d}": i for i in range(10)}


def test_the_pipeline_survives_pickling(cfg: api.Config) -> None:
    """What Dataflow needs: the workers' spec and DoFns travel pickled."""
    import pickle

    from fsmigrate.beam import pipeline as bp

    spec = bp.WorkerSpec(
        project="p",
        database="(default)",
        emulator_host=None,
        markers_root="_fsmigrate",
        revision="0001",
        script_path=str(cfg.migrations_path / "0001_test_0001.py"),
        script_source=b"",
        journal_dir="gs://bucket/journal/run",
        dry_run=False,
        capture_writes=False,
        batch_size=500,
        batch_bytes=4_000_000,
        buckets=8,
        lease_holder="h",
    )
    for fn in (bp.ApplyEach(spec), bp.ReadKeyed(spec), bp.ApplyMerged(spec)):
        again = pickle.loads(pickle.dumps(fn))
        assert again.spec == spec


def test_the_rate_cap_holds_for_all_workers_together(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 1200)

    run = api.upgrade(
        cfg, api.RunOptions(runner="beam", workers=2, batch_size=50, max_rate=400)
    ).runs[0]

    assert run.committed == 1200
    audit = api.audit(cfg, run.run_id)
    times = sorted(
        dt.datetime.fromisoformat(
            json.loads(line)["commit_time"].replace("Z", "+00:00")
        ).timestamp()
        for line in "".join(audit.chunks("jsonl")).splitlines()
    )
    assert times[-1] - times[0] >= (1200 - 2 * 400 - 2 * 50) / 400  # the cap's lower bound
    for i, start in enumerate(times):  # any 2 s: at most the cap, plus a batch per worker
        within = sum(1 for t in times[i:] if t < start + 2.0)
        assert within <= 2 * 400 + 2 * 50


def test_a_paths_only_archive_keeps_no_field_value_on_beam(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 30)
    fs_client.document("items/secret").set({"n": 3, "email": "someone@example.org"})
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
from fsmigrate.distributed import scan

archive = "paths"
source = scan("items")

def each(ctx, doc):
    if doc.get("n") % 3 == 0:
        yield ctx.delete(doc)
""",
    )

    run = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2)).runs[0]

    assert run.committed == 11 and run.archive_policy == "paths"
    assert all(not archived for *_, archived in ops_of(cfg, run.run_id))
    assert b"someone@example.org" not in cfg.state_path.read_bytes()
    assert not list(Path(str(cfg.state_path) + ".journal").glob("**/*.json"))


def test_a_beam_dry_run_estimates_what_the_beam_apply_does(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 600)

    dry = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2), dry_run=True).runs[0]
    applied = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2)).runs[0]

    keys = ("reads", "writes", "deletes", "archive_bytes")
    assert {k: dry.estimate[k] for k in keys} == {k: applied.actual[k] for k in keys}
    assert dry.estimate["reads"] == 600 and dry.estimate["deletes"] == 200
    assert dry.estimate["archive_bytes"] > 0


def test_a_document_written_twice_by_one_worker_goes_in_two_commits(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, 60)
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.delete(doc)
    yield ctx.create(doc.path, {"n": doc.get("n"), "v": 2})
""",
    )

    run = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=50)).runs[0]

    assert (run.committed, run.skipped) == (120, 0)
    assert {s.id: s.get("v") for s in fs_client.collection("items").stream()} == {
        f"i{i:05d}": 2 for i in range(60)
    }
