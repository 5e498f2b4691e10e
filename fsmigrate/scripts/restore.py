"""Restore from the archive: forward, never a rollback.

A restore is planned like a migration: for each document a run deleted or changed, the
archived before-image is written back with the precondition "must not exist", so a
document that exists now is never overwritten; the ones left alone are noted.

What the run's archive policy kept decides what can be restored (`check`): nothing from a
run whose archive was pruned or that kept paths only (refused, naming the documents), and
from redacted copies only the fields the migration's archive function kept (each such
operation is labelled, and the command warns).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from fsmigrate.errors import ArchiveUnavailable, RestoreRefused
from fsmigrate.firestore import codec
from fsmigrate.scripts import archive
from fsmigrate.scripts.loader import Script
from fsmigrate.scripts.operations import CREATE, MUST_NOT_EXIST, Operation
from fsmigrate.words import plural

_GET_BATCH = 300
_NAMED = 5  # documents named in the one line of a refusal


def doc_paths(docs: Sequence[str]) -> list[str]:
    """--doc values as document paths (`/users/u1` is `users/u1`)."""
    return [d.strip().strip("/") for d in docs]


def check_docs(state: Any, source: Any, docs: Sequence[str]) -> None:
    """Refuse (exit 1) a --doc that run `source` has no operation on: a typo would
    otherwise restore nothing, or less than asked, and exit 0."""
    if not docs:
        return
    touched = {r["path"] for r in state.ops(source["id"])}
    unknown = [d for d in docs if d not in touched]
    if unknown:
        run_id = source["id"]
        named = ", ".join(unknown[:_NAMED]) + (
            f" and {len(unknown) - _NAMED:,} more" if len(unknown) > _NAMED else ""
        )
        raise RestoreRefused(
            f"run {run_id} did not change {named}; nothing was restored "
            f"(`fsmigrate audit {run_id}` lists the documents it changed)"
        )


def later_deletes(state: Any, source: Any, docs: Sequence[str]) -> dict[str, list[str]]:
    """The documents a restore of `source` would recreate that a later apply on the same
    target deleted (or moved: a rename deletes the old path): run id -> paths."""
    wanted = set(docs)
    paths = {
        r["path"]
        for r in state.ops(source["id"], status="committed")
        if r["before"] is not None and (not wanted or r["path"] in wanted)
    }
    found: dict[str, list[str]] = {}
    if not paths:
        return found
    for run in state.runs(source["project"], source["database"]):
        if run["mode"] != "apply" or run["id"] == source["id"]:
            continue
        if (run["started_at"], run["id"]) <= (source["started_at"], source["id"]):
            continue
        for op in state.ops(run["id"], status="committed"):
            if op["kind"] == "delete" and op["path"] in paths:
                found.setdefault(run["id"], []).append(op["path"])
    return found


def describe_later(state: Any, found: dict[str, list[str]]) -> str:
    """One line: which later runs deleted or moved which of the documents."""
    parts = []
    for run_id, paths in sorted(found.items()):
        run = state.run(run_id)
        named = ", ".join(paths[:3]) + (f" and {len(paths) - 3:,} more" if len(paths) > 3 else "")
        parts.append(
            f"run {run_id} ({run['kind']} of {run['revision']} {run['description']}) "
            f"deleted or moved {len(paths):,}: {named}"
        )
    total = sum(len(p) for p in found.values())
    return (
        f"{total:,} of the documents to restore were deleted or moved by a later run: "
        + "; ".join(parts)
        + "; restoring recreates them beside what that run left"
    )


def check(state: Any, source: Any, docs: Sequence[str]) -> list[str]:
    """Refuse (ArchiveUnavailable) a restore from a run whose archive holds no document to
    restore, naming the documents it changed; the warnings for one from redacted copies."""
    gone = archive.unavailable(source, "restore")
    if gone is not None:
        wanted = set(docs)
        lost = [
            r["path"]
            for r in state.ops(source["id"], status="committed")
            if '"update_time"' in (r["precondition"] or "") and (not wanted or r["path"] in wanted)
        ]
        if not lost:
            raise gone
        run_id = source["id"]
        named = ", ".join(lost[:_NAMED]) + (
            f" and {len(lost) - _NAMED:,} more" if len(lost) > _NAMED else ""
        )
        why = (
            f"its archive was pruned at {source['pruned_at']} by run {source['pruned_by']}"
            if source["pruned_at"]
            else 'it kept paths and update times only (archive = "paths")'
        )
        raise ArchiveUnavailable(
            f"run {run_id}: {why}; none of the {plural(len(lost), 'document')} it changed or "
            f"deleted can be restored: {named} (`fsmigrate audit {run_id}` lists them)"
        )
    if (source["archive_policy"] or "").startswith(archive.REDACT + ":"):
        return [
            f"run {source['id']} archived redacted copies "
            f"({source['archive_policy'].split(':', 1)[1]}): the documents restored hold "
            "only the fields that function kept (labelled `from a redacted copy` in the "
            "report)"
        ]
    return []


def restore_script(state: Any, source: Any, docs: Sequence[str]) -> Script:
    """A one-off Script whose plan restores the before-images of run `source`."""
    run_id = source["id"]
    wanted = set(docs)
    redacted = source["archive_policy"] or ""
    label = (
        f"from a redacted copy ({redacted.split(':', 1)[1]}): only the fields it kept"
        if redacted.startswith(archive.REDACT + ":")
        else None
    )

    def plan(ctx: Any) -> Iterator[Operation]:
        rows = (
            r
            for r in state.ops(run_id, status="committed")
            if r["before"] is not None and (not wanted or r["path"] in wanted)
        )
        seen: set[str] = set()
        chunk: list[Any] = []
        for row in rows:
            if row["path"] in seen:  # an earlier op of the run already archived it
                continue
            seen.add(row["path"])
            chunk.append(row)
            if len(chunk) == _GET_BATCH:
                yield from _labelled(_restore(ctx, chunk), label)
                chunk = []
        yield from _labelled(_restore(ctx, chunk), label)
        for path in sorted(wanted - seen):
            ctx.note(f"{path}: run {run_id} has no archived copy of it; nothing to restore")

    expected = len(
        {
            r["path"]
            for r in state.ops(run_id, status="committed")
            if r["before"] is not None and (not wanted or r["path"] in wanted)
        }
    )
    return Script(
        revision=source["revision"],
        down_revision=None,
        path=Path(f"restore-of-{run_id}"),
        doc=f"Restore the documents run {run_id} deleted or changed (where missing now).",
        checksum=source["checksum"],
        plan=plan,
        expected_ops=expected,  # at most: those that exist now are left alone
    )


def _labelled(ops: Iterator[Operation], label: Optional[str]) -> Iterator[Operation]:
    for op in ops:
        op.label = op.label or label
        yield op


def _restore(ctx: Any, rows: list[Any]) -> Iterator[Operation]:
    if not rows:
        return
    current = ctx.get_many([r["path"] for r in rows])
    for row in rows:
        if current.get(row["path"]) is not None:
            ctx.note(f"{row['path']}: left alone, it exists now")
            continue
        before = codec.bytes_to_document(row["before"])
        yield Operation(
            CREATE, row["path"], precondition=MUST_NOT_EXIST, fields=type(before).pb(before).fields
        )
