"""Normalise processor_heartbeats to one document per processor.

Old processor code built heartbeat document IDs from run data
(`<Processor>_None_<run>` and `<Processor>_<YYYY-MM-DD>_<run>`), so every run created a
new document. For each processor with legacy documents, the canonical document (the
class name, or `p2_<dataset>.<table>` for phase 2) is created from the freshest legacy
document when it is missing, or overwritten by it when its `last_heartbeat` is older;
then every legacy document is deleted. Canonical documents are never deleted; documents
whose ID is neither canonical nor legacy are left alone and listed in the report.

Repeatable: backfill jobs still carrying the old code create legacy documents again, and
`bin/cleanup-heartbeat-docs.py` (or `fsmigrate rerun 0001`) cleans them up again.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from fsmigrate.heartbeats import COLLECTION, LEGACY_DATE, LEGACY_RUN, PHASE2_IDS, Classifier

revision = "0001"
down_revision = None
repeatable = True

# Phase 2 processors: class name -> canonical ID. Extend it here when a phase 2 processor's
# legacy documents show up in the report under its class name instead of its table.
PHASE2 = dict(PHASE2_IDS)

_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def freshness(doc: Any) -> tuple:
    """Order documents by `last_heartbeat` (missing or not a timestamp: oldest), then by
    when they were last written."""
    beat = doc.get("last_heartbeat")
    if not isinstance(beat, dt.datetime):
        return (False, _NEVER, doc.update_time)
    return (True, beat, doc.update_time)


class Processor:
    """What the plan keeps per canonical ID: counts and the freshest legacy document."""

    def __init__(self, canonical_id: str, canonical: Optional[Any]) -> None:
        self.canonical_id = canonical_id
        self.canonical = canonical
        self.names: set[str] = set()
        self.counts = {LEGACY_RUN: 0, LEGACY_DATE: 0}
        self.freshest: Optional[Any] = None


def plan(ctx):
    classifier = Classifier(PHASE2)
    processors: dict[str, Processor] = {}
    canonical: dict[str, Any] = {}  # one per processor: a few dozen documents
    unknown: list[str] = []
    for doc in ctx.scan(COLLECTION):
        found = classifier.classify(doc.id)
        if found.kind == "unknown":
            unknown.append(doc.id)
            continue
        if not found.is_legacy:
            canonical[doc.id] = doc
            if doc.id in classifier.phase2:
                ctx.note(f"{doc.id} is named after a phase 2 processor whose canonical ID is "
                         f"{classifier.phase2[doc.id]}; left alone, check who writes it")
            continue
        proc = processors.get(found.canonical_id)
        if proc is None:
            proc = processors[found.canonical_id] = Processor(found.canonical_id, None)
        proc.names.add(found.processor)
        proc.counts[found.kind] += 1
        # Keep the freshest legacy document until the canonical one is settled (so a crash
        # never leaves a processor without its last heartbeat); delete the others now.
        if proc.freshest is None:
            proc.freshest = doc
            continue
        if freshness(doc) > freshness(proc.freshest):
            doc, proc.freshest = proc.freshest, doc
        yield ctx.delete(doc)

    # The scan saw the whole collection, so a canonical document it did not see is missing
    # (one created since is protected by the create's "must not exist" precondition).
    for canonical_id in sorted(processors):
        proc = processors[canonical_id]
        proc.canonical = canonical.get(canonical_id)
        yield from settle(ctx, proc)
    yield ctx.barrier()  # the canonical documents land before the last legacy ones go
    for canonical_id in sorted(processors):
        yield ctx.delete(processors[canonical_id].freshest)
    for doc_id in unknown:
        ctx.note(f"unknown ID left alone: {doc_id!r}")
    ctx.note(f"{len(canonical)} canonical documents kept, {len(processors)} processors with "
             f"legacy documents, {len(unknown)} unknown IDs left alone")


def settle(ctx, proc: Processor):
    """Create or update the canonical document from the freshest legacy one, and say so."""
    freshest = proc.freshest
    data = freshest.to_dict()
    data["processor_name"] = proc.canonical_id
    legacy = sum(proc.counts.values())
    names = sorted(proc.names - {proc.canonical_id})
    head = (f"{proc.canonical_id}{' (from ' + ', '.join(names) + ')' if names else ''}: "
            f"{legacy} legacy ({proc.counts[LEGACY_RUN]} _None_, {proc.counts[LEGACY_DATE]} "
            f"dated) ->")
    beat = _beat(freshest)
    if proc.canonical is None:
        ctx.note(f"{head} CREATE canonical from {freshest.id} (last_heartbeat {beat})")
        yield ctx.create(f"{COLLECTION}/{proc.canonical_id}", data)
    elif freshness(proc.canonical)[:2] < freshness(freshest)[:2]:  # strictly older beat
        ctx.note(f"{head} UPDATE canonical from {freshest.id} (last_heartbeat "
                 f"{_beat(proc.canonical)} -> {beat})")
        yield ctx.set(proc.canonical, data)
    else:
        ctx.note(f"{head} KEEP canonical (its last_heartbeat {_beat(proc.canonical)} is the "
                 "freshest)")


def _beat(doc: Any) -> str:
    beat = doc.get("last_heartbeat")
    if isinstance(beat, dt.datetime):
        return beat.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "missing"
