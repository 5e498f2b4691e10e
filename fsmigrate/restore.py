"""Restore from the archive: forward, never a rollback.

A restore is planned like a migration: for each document a run deleted or changed, the
archived before-image is written back with the precondition "must not exist", so a
document that exists now is never overwritten; the ones left alone are noted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from . import codec
from .plan import CREATE, MUST_NOT_EXIST, Operation
from .scripts import Script

_GET_BATCH = 300


def restore_script(state: Any, source: Any, docs: Sequence[str]) -> Script:
    """A one-off Script whose plan restores the before-images of run `source`."""
    run_id = source["id"]
    wanted = set(docs)

    def plan(ctx: Any) -> Iterator[Operation]:
        rows = (r for r in state.ops(run_id, status="committed")
                if r["before"] is not None and (not wanted or r["path"] in wanted))
        seen: set[str] = set()
        chunk: list[Any] = []
        for row in rows:
            if row["path"] in seen:  # an earlier op of the run already archived it
                continue
            seen.add(row["path"])
            chunk.append(row)
            if len(chunk) == _GET_BATCH:
                yield from _restore(ctx, chunk)
                chunk = []
        yield from _restore(ctx, chunk)
        for path in sorted(wanted - seen):
            ctx.note(f"{path}: run {run_id} has no archived copy of it; nothing to restore")

    return Script(revision=source["revision"], down_revision=None,
                  path=Path(f"restore-of-{run_id}"),
                  doc=f"Restore the documents run {run_id} deleted or changed (where missing now).",
                  checksum=source["checksum"], plan=plan)


def _restore(ctx: Any, rows: list[Any]) -> Iterator[Operation]:
    if not rows:
        return
    current = ctx.get_many([r["path"] for r in rows])
    for row in rows:
        if current.get(row["path"]) is not None:
            ctx.note(f"{row['path']}: left alone, it exists now")
            continue
        before = codec.bytes_to_document(row["before"])
        yield Operation(CREATE, row["path"], precondition=MUST_NOT_EXIST,
                        fields=type(before).pb(before).fields)
