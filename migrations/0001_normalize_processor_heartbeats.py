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

Runs on both runners: `plan` in one streaming pass here, or keyed by canonical ID
(`source`, `key`, `merge`, `finish`) on `--runner beam`; the decisions are the same. A
class name is a prefix key (`key_is_prefix`): its documents are merged by the worker
whose range they start in, without a shuffle.
"""

from __future__ import annotations

from typing import Optional

from fsmigrate.heartbeats import (
    CANONICAL_PROCESSOR,
    COLLECTION,
    LEGACY_DATE,
    LEGACY_RUN,
    PHASE2_IDS,
    UNKNOWN,
    Classifier,
)
from fsmigrate.normalize import UNCHECKED, Normalization, keep_newest

revision = "0001"
down_revision = None
repeatable = True

# Phase 2 processors: class name -> canonical ID. Extend it here when a phase 2 processor's
# legacy documents show up in the report under its class name instead of its table.
PHASE2 = dict(PHASE2_IDS)
classifier = Classifier(PHASE2)


def canonical_of(doc_id: str) -> Optional[str]:
    found = classifier.classify(doc_id)
    return None if found.kind == UNKNOWN else found.canonical_id


def is_class_name(canonical_id: str) -> bool:
    """A processor's class name is a prefix of every ID merging into it (`Foo_None_1`);
    a phase 2 ID (`p2_...`) is not (its legacy IDs carry the class name)."""
    return classifier.classify(canonical_id).kind == CANONICAL_PROCESSOR


def with_processor_name(data: dict, canonical_id: str) -> dict:
    return {**data, "processor_name": canonical_id}


# Heartbeat documents have no subcollections by design: not checked one by one. Class
# names are prefix keys: each processor is merged once the scan has passed its IDs, so
# memory stays flat however many processors there are (no shuffle on Beam for them).
OPTIONS = dict(
    keep="last_heartbeat",
    on_conflict=keep_newest("last_heartbeat"),
    subcollections=UNCHECKED,
    transform=with_processor_name,
    prefix_keys=is_class_name,
)
normalization = Normalization(COLLECTION, canonical_of, **OPTIONS)


def observe(ctx, doc_id: str) -> None:
    """Count the legacy formats; flag a document named after a phase 2 class."""
    found = classifier.classify(doc_id)
    if found.is_legacy:
        ctx.count(found.kind)
    elif doc_id in classifier.phase2:
        ctx.note(
            f"{doc_id} is named after a phase 2 processor whose canonical ID is "
            f"{classifier.phase2[doc_id]}; left alone, check who writes it"
        )


def formats_note(ctx, counts: dict) -> None:
    ctx.note(
        f"legacy documents: {counts.get(LEGACY_RUN, 0)} run-suffixed (_None_), "
        f"{counts.get(LEGACY_DATE, 0)} date-suffixed"
    )


def plan(ctx):
    """The local runner: one streaming pass (memory: the processors whose IDs the scan is
    in, and the phase 2 IDs)."""

    def observed(doc_id: str) -> Optional[str]:
        observe(ctx, doc_id)
        return canonical_of(doc_id)

    yield from ctx.normalize(COLLECTION, observed, **OPTIONS)
    formats_note(ctx, ctx.counts)


# The Beam runner: keyed by canonical ID, each key merged on one worker.
source = normalization.source
key = normalization.key
key_is_prefix = normalization.key_is_prefix


def merge(ctx, key, docs):
    for doc in docs:
        observe(ctx, doc.id)
    yield from normalization.merge(ctx, key, docs)


def finish(ctx, counts):
    normalization.finish(ctx, counts)
    formats_note(ctx, counts)
