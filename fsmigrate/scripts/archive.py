"""What a run keeps of the documents it changes or deletes: its archive policy.

A migration declares `archive`:

- `"full"` (the default): the document's exact protobuf, as Firestore held it;
- `"paths"`: nothing of the document: its path and update time only (they are in the
  operation's row and precondition). For erasure migrations, where keeping a copy would
  defeat the deletion. The `Write` of an update or set is still journaled (resume needs
  it): it holds the new values, not the erased ones;
- a function `archive(data) -> dict`: it gets the document's data (as `doc.to_dict()`)
  and returns what to keep; the archive is the document with those fields (the fields
  returned unchanged are copied from the original protobuf exactly; the others are
  encoded as the client encodes them). Restore writes back what was kept.

The policy is recorded with the run (`runs.archive_policy`: `full`, `paths`, or
`redact:<function name>`), shown in the dry-run report, the plan file header and the
audit. This module also says, in one line, what a run's archive still holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from google.cloud.firestore_v1 import _helpers, types

from fsmigrate.errors import ArchiveUnavailable

FULL, PATHS, REDACT = "full", "paths", "redact"
_DocumentPb = types.Document.pb()


@dataclass(frozen=True)
class Policy:
    kind: str  # full / paths / redact
    name: str  # as recorded: full, paths, redact:<function>
    redact: Optional[Callable[[dict], Mapping[str, Any]]] = None

    def image(self, snapshot: Any) -> Optional[bytes]:
        """The bytes to archive for a document about to be changed or deleted (None: none).
        A snapshot read from the state file or a plan file (already archived under this
        policy) is kept as it is."""
        if snapshot is None or self.kind == PATHS:
            return None
        if self.kind == REDACT and self.redact is not None and hasattr(snapshot, "to_dict"):
            return redacted(snapshot, self.redact)
        return snapshot.document_bytes() or None


DEFAULT = Policy(FULL, FULL)


def problem(spec: Any) -> Optional[str]:
    """Why a script's `archive` attribute is not a policy, else None."""
    if spec in (FULL, PATHS) or callable(spec):
        return None
    return (
        '`archive` must be "full", "paths" or a function(data) -> dict of the fields to '
        f"keep, not {spec!r}"
    )


def policy(spec: Any) -> Policy:
    """The policy of a script's `archive` (or of a plan file header's `archive`)."""
    if spec is None or spec == FULL:
        return DEFAULT
    if spec == PATHS:
        return Policy(PATHS, PATHS)
    if callable(spec):
        name = getattr(spec, "__qualname__", None) or getattr(spec, "__name__", "function")
        return Policy(REDACT, f"{REDACT}:{name}", spec)
    if isinstance(spec, str) and spec.startswith(REDACT + ":"):
        return Policy(REDACT, spec)  # replayed from a plan: images were redacted then
    raise ValueError(problem(spec) or f"unknown archive policy {spec!r}")


def redacted(doc: Any, redact: Callable[[dict], Mapping[str, Any]]) -> bytes:
    """The document with the fields `redact(data)` keeps: the name and times as they were;
    a field returned as the very value it had is copied from the original protobuf."""
    data = doc.to_dict()
    kept = redact(dict(data))
    if not isinstance(kept, Mapping):
        raise TypeError(f"the archive function returned {type(kept).__name__}, not a dict")
    original = doc.pb
    out = _DocumentPb(name=original.name)
    if original.HasField("create_time"):
        out.create_time.CopyFrom(original.create_time)
    if original.HasField("update_time"):
        out.update_time.CopyFrom(original.update_time)
    for key, value in kept.items():
        if key in data and value is data[key]:
            out.fields[key].CopyFrom(original.fields[key])
        else:
            out.fields[key].CopyFrom(_helpers.encode_value(value))
    return out.SerializeToString()


def describe(run: sqlite3.Row) -> str:
    """What a run's archive holds (`run`: its row of the state file), in one sentence
    (audit, reports)."""
    name = run["archive_policy"] or FULL
    if run["pruned_at"]:
        by = f" by run {run['pruned_by']}" if run["pruned_by"] else ""
        return (
            f"pruned at {run['pruned_at']}{by}: the before-images, journaled writes and "
            "after-images are gone; paths, update times and outcomes remain"
        )
    if name == PATHS:
        return 'paths and update times only (archive = "paths"): no copy of the documents was kept'
    if name.startswith(REDACT + ":"):
        return (
            f"redacted copies (archive = {name.split(':', 1)[1]}): only the fields the "
            "migration's archive function kept"
        )
    return "full copies of the documents as Firestore held them"


def unavailable(run: sqlite3.Row, what: str) -> Optional[ArchiveUnavailable]:
    """The error for using the before-images of `run` (its row of the state file; `what`:
    export, restore) when there are none to use; None when they are there."""
    if run["pruned_at"]:
        by = f" by run {run['pruned_by']}" if run["pruned_by"] else ""
        return ArchiveUnavailable(
            f"run {run['id']}: its archive was pruned at {run['pruned_at']}{by}; the "
            f"before-images are gone, nothing to {what} (`fsmigrate audit {run['id']}` lists "
            "the paths it changed)"
        )
    if (run["archive_policy"] or FULL) == PATHS:
        return ArchiveUnavailable(
            f'run {run["id"]} kept paths and update times only (archive = "paths"): no '
            f"before-images to {what} (`fsmigrate audit {run['id']}` lists the paths it changed)"
        )
    return None
