"""Reviewed plans: a dry-run written to a file, applied later exactly as reviewed.

The file is JSON lines, written and read as a stream (a plan of 100,000 operations never
sits in memory). Line 1 is the header: format version, plan id (the dry-run's invocation),
target project and database, who made it and when, and per migration its revision,
checksum, description, dry-run run id, its read time (the instant the plan read the
database at), the number of its operation lines, the sha256
of those lines and its archive policy (`archive`: full, paths, redact:<function>; with
`paths` the lines carry no before-image); `header_sha256` covers the rest of the header.
Every other line is one operation: revision, sequence, kind, path, precondition, its
atomic group (operations that commit together or not at all, such as a rename's create
and delete), the exact `Write` protobuf (base64) that will be sent, and the before-image
(base64 `Document` protobuf) that will be archived.

The plan's digest is the sha256 of the whole file (`sha256sum plan.jsonl`): recorded with
the dry-run that wrote it and with the apply that used it, so a change ticket can cite
exactly which reviewed plan was applied.

`PlanFile.verify` reads the whole file once before anything is written: a plan cut
short, edited after review, or whose operation lines do not match their `Write`
protobufs is refused, naming what differs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from google.cloud.firestore_v1 import types
from google.protobuf.message import DecodeError

from fsmigrate.engine import reconcile
from fsmigrate.errors import NEW_PLAN, PlanFileInvalid, PlanRefused, UsageError
from fsmigrate.files import private_file
from fsmigrate.scripts.operations import (
    DELETE,
    KINDS,
    Archived,
    Group,
    Operation,
    Precondition,
    check_path,
    parse_timestamp,
    same_time,
)
from fsmigrate.state.database import operator_name
from fsmigrate.times import now_text

FORMAT = "fsmigrate-plan/2"
OLD_FORMATS = ("fsmigrate-plan/1",)
_DocumentPb = types.Document.pb()
_HEADER_KEYS = ("plan_id", "project", "database", "created_at", "created_by", "migrations")


def _b64(raw: Optional[bytes]) -> Optional[str]:
    return base64.b64encode(raw).decode() if raw is not None else None


def _unb64(text: Optional[str]) -> Optional[bytes]:
    return base64.b64decode(text, validate=True) if text is not None else None


def _line_bytes(raw: bytes) -> bytes:
    """A line as hashed: its text with the line ending normalised to LF (a copy that went
    through CRLF conversion is still the same plan)."""
    return raw.rstrip(b"\r\n") + b"\n"


def header_digest(header: dict[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Written:
    """A plan file as written: its id, path, digest and operation count."""

    plan_id: str
    path: Path
    digest: str
    operations: int


def write_plan(state: Any, run_ids: list[str], target: Any, invocation: str, path: Path) -> Written:
    """Write the plan file of the dry-run runs `run_ids` (streamed from the state file),
    readable by its owner only. The operation lines go to a temporary file first (their
    digests belong in the header, line 1); the plan appears at `path` complete or not at
    all."""
    runs = [state.run(r) for r in run_ids]
    path.parent.mkdir(parents=True, exist_ok=True)
    migrations = []
    with tempfile.TemporaryFile("w+b", dir=path.parent) as body:
        for run in runs:
            digest, count = hashlib.sha256(), 0
            for row in state.ops(run["id"]):
                if row["write"] is None:
                    raise UsageError(f"run {run['id']} was not planned with --plan-out")
                line = (
                    json.dumps(
                        {
                            "revision": run["revision"],
                            "seq": row["seq"],
                            "kind": row["kind"],
                            "path": row["path"],
                            "precondition": json.loads(row["precondition"])
                            if row["precondition"]
                            else None,
                            "group": row["grp"],
                            "label": row["label"],
                            "write": _b64(row["write"]),
                            "before": _b64(row["before"]),
                        },
                        sort_keys=True,
                    )
                    + "\n"
                ).encode()
                body.write(line)
                digest.update(line)
                count += 1
            migrations.append(
                {
                    "revision": run["revision"],
                    "checksum": run["checksum"],
                    "description": run["description"],
                    "dry_run": run["id"],
                    "operations": count,
                    "sha256": digest.hexdigest(),
                    "archive": run["archive_policy"] or "full",
                    "read_time": run["read_time"],  # the snapshot it was planned at
                }
            )
        header: dict[str, Any] = {
            "format": FORMAT,
            "plan_id": invocation,
            "project": target.project,
            "database": target.database,
            "created_at": now_text(),
            "created_by": operator_name(),
            "migrations": migrations,
        }
        header["header_sha256"] = header_digest(header)
        whole = hashlib.sha256()
        with private_file(path, "wb", durable=True) as out:
            first = (json.dumps(header, sort_keys=True) + "\n").encode()
            out.write(first)
            whole.update(first)
            body.seek(0)
            for chunk in iter(lambda: body.read(1 << 20), b""):
                out.write(chunk)
                whole.update(chunk)
    return Written(invocation, path, whole.hexdigest(), sum(m["operations"] for m in migrations))


def _same_precondition(planned: Precondition, write: Any) -> bool:
    """Does the `Write` protobuf carry the precondition the operation line states?"""
    which = (
        write.current_document.WhichOneof("condition_type")
        if write.HasField("current_document")
        else None
    )
    if planned.update_time is not None:
        return which == "update_time" and same_time(
            planned.update_time, parse_timestamp(write.current_document.update_time.ToJsonString())
        )
    if planned.exists is not None:
        return which == "exists" and write.current_document.exists == planned.exists
    return which is None or (which == "exists" and write.current_document.exists)


@dataclass
class _Tally:
    count: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    last_seq: int = -1
    groups: set = field(default_factory=set)
    last_group: Optional[int] = None


class PlanFile:
    """A plan file opened for applying: its header, its verification, and its operations
    per revision. The file stays open, so what was verified is what is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest: Optional[str] = None  # set by verify()
        try:
            self._fh = path.open("rb")
            first = self._fh.readline()
            self.header = json.loads(first)
        except (OSError, ValueError) as exc:
            raise PlanRefused(path, f"not a readable plan file ({exc})", NEW_PLAN) from exc
        fmt = self.header.get("format") if isinstance(self.header, dict) else None
        if fmt in OLD_FORMATS:
            raise PlanRefused(
                path,
                f"a plan of an older fsmigrate ({fmt}) without the integrity data apply needs",
                NEW_PLAN,
            )
        if fmt != FORMAT:
            raise PlanRefused(path, f"not an fsmigrate plan ({FORMAT})", NEW_PLAN)
        self._check_header()
        self._stat = os.fstat(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def _bad(self, problem: str) -> PlanFileInvalid:
        return PlanFileInvalid(self.path, problem)

    def _check_header(self) -> None:
        missing = [k for k in _HEADER_KEYS if k not in self.header]
        if missing:
            raise self._bad(f"the header lacks {', '.join(missing)}")
        if self.header.get("header_sha256") != header_digest(self.header):
            raise self._bad(
                "the header was edited after the plan was written (header_sha256 does not match)"
            )
        revisions = [m.get("revision") for m in self.header["migrations"]]
        if len(set(revisions)) != len(revisions):
            raise self._bad("the header lists a revision twice")

    @property
    def plan_id(self) -> str:
        return self.header["plan_id"]

    def read_time(self, revision: str) -> Optional[str]:
        """The instant the plan of `revision` read the database at (None in a plan made
        before read times were recorded)."""
        for migration in self.header["migrations"]:
            if migration.get("revision") == revision:
                value = migration.get("read_time")
                return value if isinstance(value, str) else None
        return None

    def _doc_name(self, path: str) -> str:
        return (
            f"projects/{self.header['project']}/databases/{self.header['database']}"
            f"/documents/{path}"
        )

    def _lines(self) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """(line number, raw line, parsed item) of every operation line, from the start."""
        now = os.fstat(self._fh.fileno())
        if (now.st_size, now.st_mtime_ns) != (self._stat.st_size, self._stat.st_mtime_ns):
            raise self._bad("the file changed while it was being applied")
        self._fh.seek(0)
        self._fh.readline()
        for number, raw in enumerate(self._fh, 2):
            try:
                item = json.loads(raw)
            except ValueError as exc:
                raise self._bad(f"line {number} is not JSON ({exc})") from exc
            if not isinstance(item, dict):
                raise self._bad(f"line {number} is not an operation")
            yield number, raw, item

    def verify(self, max_write_bytes: Optional[int] = None) -> str:
        """Read the whole plan once, before anything is written: every migration's operation
        count and sha256 must match the header, and every line must be an operation whose
        path, kind and precondition are the ones its `Write` protobuf carries. Returns the
        plan's digest (sha256 of the file); raises PlanFileInvalid naming what differs."""
        expected = {m["revision"]: m for m in self.header["migrations"]}
        tallies = {rev: _Tally() for rev in expected}
        whole = hashlib.sha256()
        self._fh.seek(0)
        whole.update(_line_bytes(self._fh.readline()))
        for number, raw, item in self._lines():
            line = _line_bytes(raw)
            whole.update(line)
            rev = item.get("revision")
            if rev not in tallies:
                raise self._bad(
                    f"line {number} is an operation of revision {rev!r}, which the "
                    "header does not list"
                )
            tally = tallies[rev]
            tally.count += 1
            tally.digest.update(line)
            self._check_line(number, item, tally, max_write_bytes)
        for rev, item in expected.items():
            tally = tallies[rev]
            if tally.count != item.get("operations"):
                raise self._bad(
                    f"revision {rev} has {tally.count} operation lines, the plan "
                    f"reviewed {item.get('operations')} (cut short or edited)"
                )
            if tally.digest.hexdigest() != item.get("sha256"):
                raise self._bad(
                    f"the operation lines of revision {rev} were edited after the "
                    f"plan was written (sha256 {tally.digest.hexdigest()[:12]}.. "
                    f"!= {str(item.get('sha256'))[:12]}..)"
                )
        self.digest = whole.hexdigest()
        return self.digest

    def _check_line(
        self, number: int, item: dict[str, Any], tally: _Tally, max_write_bytes: Optional[int]
    ) -> None:
        where = f"line {number}"
        kind, path, seq = item.get("kind"), item.get("path"), item.get("seq")
        if (
            kind not in KINDS
            or not isinstance(seq, int)
            or not isinstance(path, str)
            or check_path(path) is not None
        ):
            raise self._bad(f"{where} is not a valid operation (kind, seq, path)")
        if seq <= tally.last_seq:
            raise self._bad(f"{where}: operations are out of order (seq {seq})")
        tally.last_seq = seq
        group = item.get("group")
        if group is not None and group != tally.last_group:
            if group in tally.groups:
                raise self._bad(f"{where}: the operations of atomic group {group} are not together")
            tally.groups.add(group)
        tally.last_group = group
        try:
            write = reconcile.parse_write(_unb64(item.get("write")) or b"")
            before = _unb64(item.get("before"))
        except (binascii.Error, DecodeError, TypeError, ValueError) as exc:
            raise self._bad(f"{where}: its write or before-image does not decode ({exc})") from exc
        if max_write_bytes is not None and write.ByteSize() > max_write_bytes:
            raise self._bad(
                f"{where}: the {kind} of {path} is {write.ByteSize():,} bytes, more "
                f"than a commit of --batch-bytes may carry"
            )
        target = write.WhichOneof("operation")
        named = (
            write.delete
            if target == "delete"
            else write.update.name
            if target == "update"
            else None
        )
        if named != self._doc_name(path):
            raise self._bad(
                f"{where}: path {path} is not the document its Write protobuf names ({named})"
            )
        if (kind == DELETE) != (target == "delete"):
            raise self._bad(f"{where}: a {kind} of {path} whose Write protobuf is not")
        planned = Precondition.from_json(
            json.dumps(item["precondition"]) if item.get("precondition") else None
        )
        if not _same_precondition(planned, write):
            raise self._bad(
                f"{where}: the precondition of {path} is not the one its Write protobuf carries"
            )
        if before:
            try:
                doc = _DocumentPb.FromString(before)
            except DecodeError as exc:
                raise self._bad(f"{where}: its before-image does not decode") from exc
            if doc.name and doc.name != self._doc_name(path):
                raise self._bad(f"{where}: the before-image of {path} is of {doc.name}")

    def operations(self, revision: str) -> Iterator[Any]:
        """The operations of `revision`, read line by line; the operations of an atomic
        group come as one Group (committed together, skipped together)."""
        group: Optional[Group] = None
        group_id: Optional[int] = None
        for _, _, item in self._lines():
            if item.get("revision") != revision:
                continue
            pre = Precondition.from_json(
                json.dumps(item["precondition"]) if item.get("precondition") else None
            )
            op = Operation(
                item["kind"],
                item["path"],
                precondition=pre,
                before=Archived(item["path"], _unb64(item.get("before"))),
                write=_unb64(item["write"]),
                label=item.get("label"),
            )
            gid = item.get("group")
            if group is not None and gid != group_id:
                yield group
                group = None
            if gid is None:
                yield op
            elif group is None:
                group, group_id = Group([op]), gid
            else:
                group.ops.append(op)
        if group is not None:
            yield group
