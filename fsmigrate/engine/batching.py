"""Batches: how a stream of operations is cut into commits (bounded by count and encoded
bytes, an atomic group never split, a document never written twice in flight), what one
operation adds to a commit request, and what it writes, as JSON for people."""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

from fsmigrate.engine import reconcile
from fsmigrate.firestore import codec
from fsmigrate.firestore.store import Store, varint_len
from fsmigrate.firestore.subtree import check_for
from fsmigrate.scripts.context import Barrier
from fsmigrate.scripts.operations import DELETE, MUST_NOT_EXIST, Group, Operation, Precondition

MAX_BATCH = 500
# Commits are bounded by their encoded size too. The emulator refuses gRPC messages over
# 4 MiB (4,194,304 bytes), production Firestore requests over 10 MiB; Beam's Java FirestoreIO
# keeps production batches under 9.5 MiB. The default is safe on both.
DEFAULT_BATCH_BYTES = 4_000_000
MAX_BATCH_BYTES = 9_961_472  # 9.5 MiB
MIN_BATCH_BYTES = 16_384
_DELETE_SLACK = 32  # a delete's Write beyond its document name: precondition and framing
_READ_SLACK = 24  # what the precondition of a blind set adds once its document is read
MAX_CONCURRENCY = 16


def after_json(op: Operation, write: Optional[bytes]) -> Optional[str]:
    """What the operation writes, as JSON for people (from the journaled Write when sent)."""
    if op.kind == DELETE:
        return None
    if write is not None:
        pb = reconcile.parse_write(write)
        return codec.render_json(codec.fields_to_json(pb.update.fields))
    if op.fields is not None:
        return codec.render_json(codec.fields_to_json(op.fields))
    try:
        return codec.render_json(codec.fields_to_json(codec.encode_data(op.data or {})))
    except Exception:  # sentinels such as DELETE_FIELD have no value encoding
        return json.dumps({k: repr(v) for k, v in (op.data or {}).items()}, sort_keys=True)


def batches(
    ops: Iterable[Any],
    size: int,
    weigh: Optional[Callable[[list[Operation]], int]] = None,
    max_bytes: Optional[int] = None,
    in_flight: int = 0,
) -> Iterator[tuple[list[Any], bool]]:
    """(batch, barrier): batches of at most `size` operations and, with `weigh` (the encoded
    bytes of a unit of operations), at most `max_bytes`; an atomic group is never split. A
    Barrier in the stream ends the batch early and asks the runner to let every batch
    before it land first. A document written again acts the same way: one commit cannot
    write a document twice (Firestore refuses it), and the second write must land after
    the first (it then meets its precondition, or is skipped as changed): the batch ends
    there with a barrier, when the first write is in it or in one of the `in_flight`
    batches before it that may still be on the wire."""
    batch: list[Any] = []
    paths: set[str] = set()
    recent: deque[set[str]] = deque(maxlen=in_flight)  # the batches that may still fly
    used = 0

    def cut(barrier: bool) -> tuple[list[Any], bool]:
        nonlocal batch, paths, used
        out = (batch, barrier)
        if barrier:
            recent.clear()
        elif in_flight:
            recent.append(paths)
        batch, paths, used = [], set(), 0
        return out

    for op in ops:
        if isinstance(op, Barrier):
            yield cut(True)
            continue
        unit = op.ops if isinstance(op, Group) else [op]  # a group is never split
        need = weigh(unit) if weigh is not None else 0
        touched = {p for p in (getattr(u, "path", None) for u in unit) if p is not None}
        if touched & paths or any(touched & earlier for earlier in recent):
            yield cut(True)
        elif batch and (
            len(batch) + len(unit) > size or (max_bytes is not None and used + need > max_bytes)
        ):
            yield cut(False)
        batch.extend(unit)
        paths |= touched
        used += need
        if len(batch) >= size:
            yield cut(False)
    if batch:
        yield batch, False


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    for batch, _ in batches(items, size):
        yield batch


def read_before_blind_sets(store: Store, ops: list[Operation]) -> None:
    """Read what the blind sets among `ops` overwrite (their before-image) and guard each
    write with what was read (its update time, or "must not exist")."""
    blind = [op for op in ops if op.needs_read]
    if not blind:
        return
    current = store.get_many(op.path for op in blind)
    for op in blind:
        doc = current.get(op.path)
        op.before = doc
        op.precondition = Precondition(update_time=doc.update_time) if doc else MUST_NOT_EXIST


def refuse_parents(
    store: Store,
    ops: list[Operation],
    note: Callable[[str], None],
    read_time: Optional[dt.datetime] = None,
) -> list[Operation]:
    """`ops` without the deletes (ctx.delete's default, subcollections="refuse") whose
    document has subcollections: each is left alone, with a note naming them. The
    documents of a batch are checked together, at the plan's read time, by a few keys-only
    queries over their names (`subtree.with_subtrees`: about one per batch when they come
    in a row) instead of one ListCollectionIds call each; only a document found to have a
    subtree is listed, for the note's names."""
    check = [op for op in ops if op.unless_subcollections]
    if not check:
        return ops
    parents = check_for(store, read_time).find(op.path for op in check)
    refused = set()
    for op in check:
        if op.path not in parents:
            continue
        names = store.subcollections(op.path, read_time=read_time)
        if names:
            refused.add(id(op))
            note(
                f"REFUSED delete {op.path}: {op.path} has subcollections "
                f"{', '.join(names)} (subcollections='refuse'; 'delete' deletes them too, "
                "'keep' leaves them)"
            )
    return [op for op in ops if id(op) not in refused]


def encoded_bytes(store: Store, op: Operation, build: Callable[[Operation], bytes]) -> int:
    """What `op` adds to a commit request (its Write, framed). A delete is sized without
    encoding it (its name plus a precondition); a blind set's precondition is only known
    once its document is read; any other write is built (by `build`) and kept."""
    if op.write is not None:
        n = len(op.write)
    elif op.kind == DELETE:
        n = len(store.doc_name(op.path).encode()) + _DELETE_SLACK
    elif op.needs_read:
        n = len(build(op)) + _READ_SLACK
    else:
        op.write = build(op)
        n = len(op.write)
    return 1 + varint_len(n) + n
