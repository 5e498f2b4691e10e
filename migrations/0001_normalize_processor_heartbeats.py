"""Normalise processor_heartbeats to one document per processor.

Old processor code built heartbeat document IDs from run data
(`<Processor>_None_<run>` and `<Processor>_<YYYY-MM-DD>_<run>`), so every run created a
new document. For each processor with legacy documents, the freshest legacy document (by
`last_heartbeat`) becomes the canonical document (the class name, or
`p2_<dataset>.<table>` for phase 2) when that is missing or has an older `last_heartbeat`
(`processor_name` set to the canonical ID); the other legacy documents are deleted.
Canonical documents are never deleted; documents whose ID is neither canonical nor legacy
are left alone and listed in the report.

Repeatable: backfill jobs still carrying the old code create legacy documents again, and
`bin/cleanup-heartbeat-docs.py` (or `fsmigrate rerun 0001`) cleans them up again.
"""
from __future__ import annotations

from typing import Optional

from fsmigrate.heartbeats import (COLLECTION, LEGACY_DATE, LEGACY_RUN, PHASE2_IDS, UNKNOWN,
                                  Classifier)
from fsmigrate.normalize import UNCHECKED, keep_newest

revision = "0001"
down_revision = None
repeatable = True

# Phase 2 processors: class name -> canonical ID. Extend it here when a phase 2 processor's
# legacy documents show up in the report under its class name instead of its table.
PHASE2 = dict(PHASE2_IDS)


def plan(ctx):
    classifier = Classifier(PHASE2)
    formats = {LEGACY_RUN: 0, LEGACY_DATE: 0}

    def canonical_of(doc_id: str) -> Optional[str]:
        found = classifier.classify(doc_id)
        if found.kind == UNKNOWN:
            return None
        if found.is_legacy:
            formats[found.kind] += 1
        elif doc_id in classifier.phase2:
            ctx.note(f"{doc_id} is named after a phase 2 processor whose canonical ID is "
                     f"{classifier.phase2[doc_id]}; left alone, check who writes it")
        return found.canonical_id

    # Heartbeat documents have no subcollections by design: not checked one by one.
    yield from ctx.normalize(
        COLLECTION, canonical_of, keep="last_heartbeat",
        on_conflict=keep_newest("last_heartbeat"), subcollections=UNCHECKED,
        transform=lambda data, canonical_id: {**data, "processor_name": canonical_id})
    ctx.note(f"legacy documents: {formats[LEGACY_RUN]} run-suffixed (_None_), "
             f"{formats[LEGACY_DATE]} date-suffixed")
