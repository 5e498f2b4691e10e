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
