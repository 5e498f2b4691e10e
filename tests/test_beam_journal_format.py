"""The batch files of a Beam journal: a JSON header and the bytes as they are, read back
exactly; a journal of an earlier release (all JSON, base64 bytes) is still read."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

from fsmigrate.beam import workfiles

OPS = [
    {
        "kind": "delete",
        "path": "items/a",
        "precondition": '{"update_time": "2026-12-06T21:46:22.149928Z"}',
        "before": os.urandom(300) + b"\n\x00",
        "write": os.urandom(120),
        "group": None,
        "label": "legacy \n of a",
        "after": None,
    },
    {
        "kind": "set",
        "path": "items/é",
        "precondition": '{"exists": false}',
        "before": None,
        "write": b"",
        "group": 3,
        "label": None,
        "after": '{"n": 1}',
    },
    {
        "kind": "update",
        "path": "items/c",
        "precondition": None,
        "before": b"",
        "write": None,
        "group": 3,
        "label": None,
        "after": None,
    },
]


def test_a_batch_file_reads_back_exactly(tmp_path: Path) -> None:
    path = str(tmp_path / "batch-u1-a-w-000001.batch")
    workfiles.write_file(path, workfiles.encode_batch("w", 1, OPS))
    workfiles.write_file(path[: -len(".batch")] + workfiles.OUTCOME, b'{"committed": []}')

    [(name, found, has_outcome)] = workfiles.batch_files(str(tmp_path))
    batch = workfiles.read_batch(found, has_outcome)

    assert (name, has_outcome) == ("batch-u1-a-w-000001.batch", True)
    assert (batch.worker, batch.number, batch.ops) == ("w", 1, OPS)
    assert batch.outcome == {"committed": []}


def test_a_truncated_batch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch-u1-a-w-000001.batch"
    path.write_bytes(workfiles.encode_batch("w", 1, OPS)[:-5])
    with pytest.raises(ValueError, match="described by its header"):
        workfiles.read_batch(str(path), False)


def test_a_journal_of_an_earlier_release_is_still_read(tmp_path: Path) -> None:
    def b64(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(raw).decode()

    old = [{**op, "before": b64(op["before"]), "write": b64(op["write"])} for op in OPS]
    (tmp_path / "batch-u1-a-w-000001.json").write_text(
        json.dumps({"worker": "w", "n": 1, "ops": old}, sort_keys=True)
    )
    (tmp_path / "batch-u1-a-w-000001.outcome.json").write_text('{"committed": [[0, "t"]]}')
    (tmp_path / "batch-u1-a-w-000002.json").write_text(
        json.dumps({"worker": "w", "n": 2, "ops": old[:1]})
    )

    found = workfiles.batch_files(str(tmp_path))
    batches = [workfiles.read_batch(path, outcome) for _, path, outcome in found]

    assert [(name, outcome) for name, _, outcome in found] == [
        ("batch-u1-a-w-000001.json", True),
        ("batch-u1-a-w-000002.json", False),
    ]
    assert batches[0].ops == OPS and batches[1].ops == OPS[:1]
    assert batches[0].outcome == {"committed": [[0, "t"]]} and batches[1].outcome is None


def test_a_batch_with_its_outcome_is_recorded_as_it_ended_in_one_go(tmp_path: Path) -> None:
    """The coordinator's import: a batch whose outcome file is there is recorded with the
    rows as they ended (committed with the commit time, skipped with the reason) and the
    run's counters moved with them; a batch without one stays pending until its outcome
    comes, and a second import records nothing twice."""
    from fsmigrate.beam import journal
    from fsmigrate.state.database import State

    state = State.open(tmp_path / "state.db")
    run_id = state.start_run(
        invocation="test", project="p", database="(default)", revision="0001",
        checksum="x", description="d", mode="apply",
    )  # fmt: skip
    directory = tmp_path / "journal"
    directory.mkdir()
    ended = str(directory / "batch-u1-a-w-000001")
    workfiles.write_file(ended + workfiles.BATCH, workfiles.encode_batch("w", 1, OPS))
    outcome = {"committed": [[0, "2026-12-06T21:46:23.000001Z"]], "skipped": [[1, "changed"]]}
    workfiles.write_file(ended + workfiles.OUTCOME, json.dumps(outcome).encode())
    open_ = str(directory / "batch-u1-a-w-000002")
    workfiles.write_file(open_ + workfiles.BATCH, workfiles.encode_batch("w", 2, OPS[:1]))

    assert journal.import_batches(state, run_id, str(directory)) == 2
    rows = {(r["seq"], r["status"]): r for r in state.ops(run_id)}
    assert sorted(rows) == [(0, "committed"), (1, "skipped"), (2, "pending"), (3, "pending")]
    assert rows[(0, "committed")]["commit_time"].startswith("2026-12-06T21:46:23")
    assert rows[(1, "skipped")]["reason"] == "changed"
    counters = dict(state.run(run_id))
    state.update_totals(run_id)  # a recount from the rows agrees with the counters
    recounted = dict(state.run(run_id))
    for name in ("planned", "committed", "skipped", "failed"):
        assert counters[name] == recounted[name], name
    assert (counters["committed"], counters["skipped"], counters["failed"]) == (1, 1, 2)
    assert {n: settled for n, (_, _, settled) in state.journal_batches(run_id).items()} == {
        "batch-u1-a-w-000001.batch": True,
        "batch-u1-a-w-000002.batch": False,
    }

    workfiles.write_file(  # the second batch's outcome comes later: only it is added
        open_ + workfiles.OUTCOME, json.dumps({"committed": [], "skipped": [[0, "gone"]]}).encode()
    )
    assert journal.import_batches(state, run_id, str(directory)) == 0
    statuses = [r["status"] for r in state.ops(run_id)]
    assert statuses == ["committed", "skipped", "pending", "skipped"]
    assert dict(state.run(run_id))["skipped"] == 2
