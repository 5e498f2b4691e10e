"""Operations a migration's plan() yields, with their preconditions. Pure: no I/O.

An operation built from a snapshot carries the snapshot's `update_time` as its
precondition (the document must be exactly as it was when planned) and the snapshot
itself as the before-image. `create` carries "must not exist". A blind `set` has no
snapshot: the runner reads the document just before writing it, so that what the set
overwrites is archived and guarded the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from fsmigrate.times import rfc3339

DELETE = "delete"
SET = "set"
UPDATE = "update"
CREATE = "create"
KINDS = (DELETE, SET, UPDATE, CREATE)


class Snapshot(Protocol):
    """What an operation needs from a document read by the migration."""

    @property
    def path(self) -> str: ...

    @property
    def update_time(self) -> Optional[dt.datetime]: ...

    def document_bytes(self) -> bytes: ...


@dataclass(frozen=True)
class Precondition:
    """`exists=False`: must not exist. `update_time`: must exist, last written then."""

    exists: Optional[bool] = None
    update_time: Optional[dt.datetime] = None

    def to_json(self) -> Optional[str]:
        if self.update_time is not None:
            return json.dumps({"update_time": rfc3339(self.update_time)})
        if self.exists is not None:
            return json.dumps({"exists": self.exists})
        return None

    @classmethod
    def from_json(cls, text: Optional[str]) -> Precondition:
        if not text:
            return NONE
        obj = json.loads(text)
        if "update_time" in obj:
            return cls(update_time=parse_timestamp(obj["update_time"]))
        return cls(exists=obj.get("exists"))

    def holds_for(self, current: Optional[Snapshot]) -> bool:
        """Would a write with this precondition succeed against `current` (None = missing)?"""
        if self.update_time is not None:
            return current is not None and same_time(current.update_time, self.update_time)
        if self.exists is False:
            return current is None
        if self.exists is True:
            return current is not None
        return True

    def why_not(self, current: Optional[Snapshot]) -> str:
        if self.exists is False:
            return "already exists"
        if current is None:
            return "vanished since plan"
        return "changed since plan"


NONE = Precondition()
MUST_NOT_EXIST = Precondition(exists=False)


@dataclass
class Operation:
    kind: str
    path: str
    data: Optional[Mapping[str, Any]] = None
    precondition: Precondition = NONE
    before: Optional[Snapshot] = field(default=None, repr=False)
    fields: Optional[Any] = field(default=None, repr=False)  # protobuf Values, written as is
    write: Optional[bytes] = field(default=None, repr=False)  # the journaled Write, resent as is
    label: Optional[str] = None  # for reports, e.g. "rename a/x -> a/y"
    group: Optional[int] = None  # set by the runner for operations of one atomic Group
    # a delete refused if its document has subcollections (ctx.delete's default): checked
    # by the runner for a whole batch at once, in parallel (`batching.refuse_parents`)
    unless_subcollections: bool = field(default=False, repr=False)

    @property
    def needs_read(self) -> bool:
        """A blind set: the runner must read what it overwrites before writing."""
        return self.kind == SET and self.before is None and self.precondition == NONE


@dataclass
class Group:
    """Operations that land in one atomic commit, or not at all: a rename (create the new
    document, delete the old one) can never leave both or neither. `children` are groups
    that go first (the documents of moved or deleted subcollections): any iterable, read
    once, as the runner plans them (a subtree's groups come as its stream is read)."""

    ops: list[Operation]
    children: Iterable[Group] = field(default_factory=list)


@dataclass(frozen=True)
class Archived:
    """A before-image from the state file, standing in for the snapshot it was taken from."""

    path: str
    raw: Optional[bytes]
    update_time: Optional[dt.datetime] = None

    def document_bytes(self) -> bytes:
        return self.raw or b""


def parse_timestamp(text: str) -> dt.datetime:
    """Inverse of `fsmigrate.times.rfc3339` (nanoseconds kept)."""
    from proto.datetime_helpers import DatetimeWithNanoseconds

    return DatetimeWithNanoseconds.from_rfc3339(text)


def same_time(a: Optional[dt.datetime], b: Optional[dt.datetime]) -> bool:
    if a is None or b is None:
        return a is b
    return rfc3339(a) == rfc3339(b)


def check_path(path: object) -> Optional[str]:
    """Return why `path` is not a document path ("col/id" or "col/id/sub/id"), else None."""
    if not isinstance(path, str) or not path:
        return "document path must be a non-empty string"
    parts = path.split("/")
    if len(parts) % 2:
        return f"{path!r} is a collection path, not a document path (odd number of segments)"
    if any(not p for p in parts):
        return f"{path!r} has an empty segment"
    if any(p in (".", "..") or (p.startswith("__") and p.endswith("__")) for p in parts):
        return f"{path!r} has a reserved segment"
    return None


def check_operation(op: Any) -> Optional[str]:
    """Return why `op` is not a valid operation, else None (used on every yielded item)."""
    if not isinstance(op, Operation):
        return (
            f"plan() yielded {type(op).__name__}, not an operation; "
            "yield ctx.delete/set/update/create(...)"
        )
    if op.kind not in KINDS:
        return f"unknown operation kind {op.kind!r}"
    problem = check_path(op.path)
    if problem:
        return problem
    if op.fields is not None or op.write is not None:
        return None
    if op.kind in (SET, CREATE, UPDATE) and not isinstance(op.data, Mapping):
        return f"{op.kind} of {op.path} needs a mapping of fields"
    if op.kind == UPDATE and not op.data:
        return f"update of {op.path} has no fields"
    return None
