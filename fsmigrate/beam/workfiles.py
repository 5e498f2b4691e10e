"""The journal a Beam run's workers write: one file per batch, then one per outcome.

`batch-<worker>-<n>.batch` holds the batch as planned (kind, path, precondition,
before-image, the exact Write protobuf, atomic group, label: a JSON header line, then the
before-images and writes as raw bytes) and is in place BEFORE the batch is sent;
`batch-<worker>-<n>.outcome.json` holds what committed and what was skipped, and is
written after. (An earlier release wrote the batch as one JSON document,
`batch-<worker>-<n>.json`, bytes in base64: such a journal, left by a coordinator that
died, is still imported.) Both are written under a temporary name and renamed, so
a file that exists is whole. A batch without an outcome may or may not have landed: the
coordinator imports it as pending and the next run settles it by re-reading, like a local
run killed mid-batch. Notes and counters of the migration go to `notes-*.json`.

Paths are local or any scheme Beam's FileSystems knows (gs:// on Dataflow).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

from fsmigrate.files import private_dir, private_file
from fsmigrate.state.database import is_problem

OUTCOME = ".outcome.json"
BATCH = ".batch"
MAGIC = b"fsmigrate journal batch 1\n"


def _is_local(path: str) -> bool:
    return "://" not in path


def join(directory: str, name: str) -> str:
    if _is_local(directory):
        return os.path.join(directory, name)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(directory, name)


def readable_here(location: str) -> bool:
    """Whether this process can import the journal at `location`: one in an object store
    (a URL) always (empty until a batch is written there; a store that refuses this
    process raises when it is read); a local directory when it is on this machine (the
    coordinator makes it before it records it: on another machine, it is not)."""
    return not _is_local(location) or os.path.isdir(location)


def make_private(directory: str) -> None:
    """A run's journal directory, readable by its owner only when it is local (the batch
    files and Beam's notes hold before-images and document IDs); an object store's access
    is its bucket's IAM."""
    if _is_local(directory):
        private_dir(directory)


def write_file(path: str, data: bytes) -> None:
    """Write `path` whole or not at all; durable on return (fsync for local files)."""
    if _is_local(path):  # batch files hold before-images: the owner's only
        private_dir(os.path.dirname(path))
        with private_file(path, "wb", durable=True) as fh:
            fh.write(data)
        return
    from apache_beam.io.filesystems import FileSystems

    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with FileSystems.create(tmp) as fh:
        fh.write(data)
    FileSystems.rename([tmp], [path])  # an object store's rename is a copy of a whole object


def read_file(path: str) -> bytes:
    if _is_local(path):
        with open(path, "rb") as fh:
            return fh.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return fh.read()


def read_lines(path: str) -> Iterator[bytes]:
    """A file's lines, read as they are used."""
    if _is_local(path):
        with open(path, "rb") as fh:
            yield from fh
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        yield from iter(fh.readline, b"")  # (a compressed file has readline, not lines)


def list_files(directory: str, prefix: str) -> list[str]:
    if _is_local(directory):
        if not os.path.isdir(directory):
            return []
        return sorted(
            os.path.join(directory, n)
            for n in os.listdir(directory)
            if n.startswith(prefix) and not n.endswith(".tmp")
        )
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([join(directory, prefix + "*")])[0].metadata_list
    return sorted(m.path for m in found if not m.path.endswith(".tmp"))


def remove_tree(directory: str) -> None:
    if _is_local(directory):
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        return
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(directory):
        FileSystems.delete([directory])


def _unb64(text: Optional[str]) -> Optional[bytes]:
    return base64.b64decode(text) if text is not None else None


# An operation's fields in a batch file's header, in this order; its before-image and its
# write follow the header as raw bytes (their lengths in the header, -1 for none).
_FIELDS = ("kind", "path", "precondition", "group", "label", "after")


def encode_batch(worker: str, number: int, ops: list[dict[str, Any]]) -> bytes:
    """A batch file: the magic line, a JSON header line (the worker, the batch's number,
    each operation's fields and the lengths of its before-image and write), then those
    bytes as they are (no base64: the file is written once and read once, in bulk)."""
    head: list[list[Any]] = []
    blobs: list[bytes] = []
    for op in ops:
        before, write = op.get("before"), op.get("write")
        head.append(
            [
                *(op.get(name) for name in _FIELDS),
                -1 if before is None else len(before),
                -1 if write is None else len(write),
            ]
        )
        blobs.extend(blob for blob in (before, write) if blob is not None)
    header = json.dumps({"worker": worker, "n": number, "ops": head}).encode()
    return b"".join([MAGIC, header, b"\n", *blobs])


def _decode_batch(data: bytes) -> tuple[str, int, list[dict[str, Any]]]:
    """(worker, number, operations) of a batch file; one of an earlier release (all
    JSON, base64 bytes) too."""
    if not data.startswith(MAGIC):
        body = json.loads(data)
        ops = [
            {**op, "before": _unb64(op.get("before")), "write": _unb64(op.get("write"))}
            for op in body["ops"]
        ]
        return body["worker"], body["n"], ops
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC) : end])
    at = end + 1
    ops = []
    for *fields, before_len, write_len in header["ops"]:
        op = dict(zip(_FIELDS, fields))
        op["before"] = None if before_len < 0 else data[at : at + before_len]
        at += max(before_len, 0)
        op["write"] = None if write_len < 0 else data[at : at + write_len]
        at += max(write_len, 0)
        ops.append(op)
    if at != len(data):
        raise ValueError(f"batch file of {len(data)} bytes, {at} described by its header")
    return header["worker"], header["n"], ops


@dataclass
class JournaledBatch:
    name: str  # the batch file's name in the journal (what the state file records)
    worker: str
    number: int
    ops: list[dict[str, Any]]
    outcome: Optional[dict[str, Any]]  # {"committed": [[i, time]], "skipped": [[i, why]]}


def _stem(path: str) -> str:
    """A batch file's path without its suffix (its outcome file is the stem + OUTCOME)."""
    for suffix in (OUTCOME, BATCH, ".json"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def is_batch(path: str) -> bool:
    """A batch file (`.batch`; `.json` from an earlier release), not an outcome file."""
    return not path.endswith(OUTCOME) and path.endswith((BATCH, ".json"))


def batch_files(directory: str) -> list[tuple[str, str, bool]]:
    """The batch files of a run's journal in a stable order: (name, path, whether its
    outcome file exists). A batch file is in place before its batch is sent; its outcome
    file after the commit returned."""
    paths = list_files(directory, "batch-")
    outcomes = {_stem(p) for p in paths if p.endswith(OUTCOME)}
    return [(_name(path), path, _stem(path) in outcomes) for path in paths if is_batch(path)]


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def read_batch(path: str, outcome: bool) -> JournaledBatch:
    """One batch file, and its outcome when `outcome` (its file exists)."""
    worker, number, ops = _decode_batch(read_file(path))
    done = read_outcome(path) if outcome else None
    return JournaledBatch(_name(path), worker, number, ops, done)


def read_outcome(path: str) -> dict[str, Any]:
    """The outcome of the batch file at `path` (its outcome file must exist)."""
    return json.loads(read_file(_stem(path) + OUTCOME))


def exists(directory: str) -> bool:
    if _is_local(directory):
        return os.path.isdir(directory)
    from apache_beam.io.filesystems import FileSystems

    return bool(FileSystems.exists(directory)) or bool(list_files(directory, ""))


@dataclass
class Outputs:
    """What the workers reported besides their journal: the migration's notes (in a
    stable order: conflicts and refusals first, each kind in text order, however the
    runner sharded them; read once), the sums of its counters, of their usage (documents
    read, bytes archived) and of their throttling statistics."""

    notes: Iterator[str]
    counts: dict[str, int]
    usage: dict[str, int]
    traffic: list[dict[str, Any]]


@contextmanager
def read_outputs(directory: str) -> Iterator[Outputs]:
    """The workers' `notes-*.json`, read in one pass. The notes are sorted on disk, not in
    memory (a run over a million documents has tens of thousands: 0001 notes each
    processor): in a SQLite table kept in their order, in a file of its own in a
    temporary directory only its owner can read (notes name documents), which is gone
    when the block ends."""
    with tempfile.TemporaryDirectory(prefix="fsmigrate-notes-") as tmp:
        sort = sqlite3.connect(os.path.join(tmp, "notes.db"))
        try:
            sort.executescript(
                "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                "CREATE TABLE notes (later INTEGER, text TEXT, n INTEGER,"
                " PRIMARY KEY (later, text, n)) WITHOUT ROWID"
            )
            out = Outputs(iter(()), {}, {}, [])
            with sort:
                for n, item in enumerate(_reported(directory)):
                    if "note" in item:
                        text = item["note"]
                        sort.execute(
                            "INSERT INTO notes VALUES (?, ?, ?)",
                            (0 if is_problem(text) else 1, text, n),
                        )
                    elif "usage" in item:
                        for name, used in item["usage"].items():
                            out.usage[name] = out.usage.get(name, 0) + used
                    elif "traffic" in item:
                        out.traffic.append(item["traffic"])
                    else:
                        out.counts[item["count"]] = out.counts.get(item["count"], 0) + item["n"]
            out.notes = (
                text for (text,) in sort.execute("SELECT text FROM notes ORDER BY later, text, n")
            )
            yield out
        finally:
            sort.close()


def _reported(directory: str) -> Iterator[dict[str, Any]]:
    """Every item the workers wrote to `notes-*.json` (a note, a counter, usage, traffic)."""
    for path in list_files(directory, "notes-"):
        for line in read_lines(path):
            if line.strip():
                yield json.loads(line)
