"""Renaming and merging documents into their canonical IDs (the ctx.rename / ctx.normalize
primitives). Planning only: everything here builds operations; nothing is written.

A rename is one atomic Group: the new document is created (must not exist) or, on a
conflict the migration chose to resolve, overwritten (must be unchanged since read), and
the old one deleted (must be unchanged since planned), in the same commit. A document
with subcollections is refused (default, reported), or its subtree is moved or deleted
first, with the same preconditions and archive: read as one stream (`ctx.subtree`, every
level at once), each document moved or deleted after what is under it, in bounded
batches, so memory does not grow with the subtree; "unchecked" skips the check for
collections that have no subcollections by design.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

from fsmigrate.distributed import check_prefix
from fsmigrate.firestore.subtree import post_order
from fsmigrate.scripts.operations import (
    CREATE,
    DELETE,
    MUST_NOT_EXIST,
    SET,
    Group,
    Operation,
    Precondition,
)
from fsmigrate.times import rfc3339

SKIP = "skip"
OVERWRITE = "overwrite"
REFUSE, MOVE, DELETE_SUBS = "refuse", "move", "delete"
KEEP = "keep"  # ctx.delete: delete the document, knowingly leave its subcollections
# For collections without subcollections by design: no ListCollectionIds call per document
# (about 1.7 ms each on the emulator, 80 s for 48,000 documents). Say so in the script.
UNCHECKED = "unchecked"


@dataclass(frozen=True)
class KeepNewest:
    """On a conflict, keep whichever document has the newer `field` (missing = oldest;
    ties keep the existing target)."""

    field: str


def keep_newest(field: str) -> KeepNewest:
    return KeepNewest(field)


Conflict = Union[str, KeepNewest]
_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

# Operation labels (in the audit: `ops.label`); merge_step() reads them back.
ARROW = " -> "
MERGED_OLDER = " (merged: older)"


def _kept_newer(target: str) -> str:
    return f" (merged: {target} kept, newer)"


def _overwrote(target: str) -> str:
    return f" (overwrote {target})"


def newness(doc: Any, field: Optional[str]) -> tuple:
    """Order documents by `field` (when it is a timestamp or number), then update time:
    (1, the field's seconds or number, update time in microseconds), or (0, 0.0, ...)
    without such a field. Timestamps count to the microsecond, as datetimes compare. A
    document read by the Store (`Doc`) is ordered from its protobuf, decoding nothing: a
    plan computes this for every document it merges."""
    pb = getattr(doc, "pb", None)
    if pb is not None:
        return _newness_of_pb(pb, field)
    value = doc.get(field) if field else None
    updated = _micros(doc.update_time)
    if isinstance(value, dt.datetime):
        return (1, value.timestamp(), updated)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), updated)
    return (0, 0.0, updated)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)


def _micros(when: Optional[dt.datetime]) -> Optional[int]:
    return None if when is None else (when - _EPOCH) // _MICRO


def _newness_of_pb(pb: Any, field: Optional[str]) -> tuple:
    """`newness` of a Document protobuf (the same tuple its decoded values give)."""
    updated = _stamp_micros(pb.update_time)
    value: Any = _value_pb(pb.fields, field) if field else None
    kind = value.WhichOneof("value_type") if value is not None else None
    if kind == "timestamp_value":
        return (1, _stamp_micros(value.timestamp_value) / 1_000_000, updated)
    if kind == "integer_value":
        return (1, float(value.integer_value), updated)
    if kind == "double_value":
        return (1, value.double_value, updated)
    return (0, 0.0, updated)


def _stamp_micros(stamp: Any) -> int:
    """Microseconds since the epoch of a Timestamp protobuf (floored, as datetimes hold)."""
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def _value_pb(fields: Any, field: str) -> Any:
    """The Value protobuf at a dotted field path of a document's fields, or None."""
    parts = field.split(".")
    for part in parts[:-1]:
        if part not in fields or fields[part].WhichOneof("value_type") != "map_value":
            return None
        fields = fields[part].map_value.fields
    return fields[parts[-1]] if parts[-1] in fields else None


def _sibling(path: str, new_id: str) -> str:
    if not new_id or "/" in new_id:
        raise ValueError(f"new id {new_id!r} must be a non-empty document id without '/'")
    return path.rsplit("/", 1)[0] + "/" + new_id


def _missing(doc: Any) -> bool:
    """A document that does not exist but has subcollections (ctx.scan(missing=True))."""
    return getattr(doc, "exists", True) is False


class Renamer:
    """Builds rename groups; `ctx` supplies reads (get, subcollections, scan) and notes."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def delete(self, doc: Any, subcollections: str = REFUSE) -> Union[Operation, Group]:
        """ctx.delete with subcollections "refuse" or "delete": the document's delete and
        its subtree's (each guarded and archived); a refused one is an empty group and a
        note. A missing document has only its subtree. The subtree is read as a stream
        (`ctx.subtree`). One that fits in one commit (`ctx.max_group` operations, the
        parent's delete included) is one atomic group: all of it goes, or, when any of its
        documents changed since the plan, none of it. A bigger one goes in stages, in
        bounded batches, each document its own group after everything under it, the
        parent last: memory holds one batch, whatever the subtree's size."""
        label = f"delete {doc.path}"
        names = self._names(doc, subcollections, label)
        if names is None:
            return Group([])
        own = [] if _missing(doc) else [self._delete(doc, f"{doc.path} deleted")]
        if not names:
            return own[0] if own else Group([])
        what = "missing document, subcollections only" if not own else "with its subtree"
        intro = f"DELETE {doc.path} ({what})"
        docs = iter(self.ctx.subtree(doc.path))
        room = getattr(self.ctx, "max_group", 0) - len(own)
        head = list(itertools.islice(docs, max(room, 0) + 1))
        if len(head) <= room:
            self.ctx.note(f"{intro}: {len(head)} documents under {', '.join(names)}")
            return Group([*(op for g in self._deleted(doc, head) for op in g.ops), *own])
        return Group(own, self._staged(doc, itertools.chain(head, docs), intro, names))

    def _staged(
        self, doc: Any, docs: Iterable[Any], intro: str, names: list[str]
    ) -> Iterator[Group]:
        """The deletes of a subtree too big for one commit, as they are read; the note
        once they have all been planned (their count is known then)."""
        count = 0
        for group in self._deleted(doc, docs):
            count += 1
            yield group
        self.ctx.note(
            f"{intro}: {count} documents under {', '.join(names)}; too many for one "
            f"commit: deleted in stages, each after what is under it, {doc.path} last"
        )

    def _deleted(self, doc: Any, docs: Iterable[Any]) -> Iterator[Group]:
        """A group deleting each of `docs` (the subtree of `doc`, in name order), each
        after what is under it."""
        for child in post_order(docs):
            yield Group([self._delete(child, f"{child.path} deleted (under {doc.path})")])

    def _moved(self, doc: Any, new_path: str, docs: Iterable[Any]) -> Iterator[Group]:
        """A group moving each of `docs` (the subtree of `doc`) to the same place under
        `new_path` (created there, "must not exist", and deleted here in one commit), each
        after what is under it."""
        for child in post_order(docs):
            target = new_path + child.path[len(doc.path) :]
            label = f"{child.path} -> {target} (moved)"
            create = Operation(
                CREATE, target, precondition=MUST_NOT_EXIST, fields=child.pb.fields, label=label
            )
            yield Group([create, self._delete(child, label)])

    def rename(
        self,
        doc: Any,
        new_id: str,
        *,
        on_conflict: Conflict = SKIP,
        subcollections: str = REFUSE,
        target: Any = "read",
        transform: Optional[Callable[[dict, str], dict]] = None,
        note_resolved: bool = True,
    ) -> Group:
        new_path = _sibling(doc.path, new_id)
        if _missing(doc):  # nothing of its own: its subcollections move (or go)
            label = f"{doc.path}{ARROW}{new_path} (missing document, subcollections only)"
            if subcollections == DELETE_SUBS:
                moved = self._subcollections(doc, None, DELETE_SUBS, label)
            else:
                moved = self._subcollections(doc, new_path, subcollections, label)
            return Group([], moved or [])
        if target == "read":
            target = self.ctx.get(new_path)
        label = f"{doc.path}{ARROW}{new_path}"
        children = self._subcollections(doc, new_path, subcollections, label)
        if children is None:
            return Group([])
        delete_old = self._delete(doc, label)
        if target is None:
            write = self._write(CREATE, new_path, doc, MUST_NOT_EXIST, None, label, transform)
            return Group([write, delete_old], children)
        if on_conflict == SKIP:
            self.ctx.note(f"CONFLICT {label}: {new_path} exists; skipped (on_conflict=skip)")
            return Group([])
        if (
            isinstance(on_conflict, KeepNewest)
            and newness(doc, on_conflict.field)[:2] <= newness(target, on_conflict.field)[:2]
        ):
            if note_resolved:
                self.ctx.note(
                    f"CONFLICT {label}: {new_path} exists and is newer by "
                    f"{on_conflict.field}; kept it, {doc.path} deleted"
                )
            return Group([self._delete(doc, label + _kept_newer(new_path))], children)
        if on_conflict != OVERWRITE and not isinstance(on_conflict, KeepNewest):
            raise ValueError(
                f"on_conflict must be 'skip', 'overwrite' or keep_newest(field), "
                f"not {on_conflict!r}"
            )
        how = (
            f"keep_newest({on_conflict.field})"
            if isinstance(on_conflict, KeepNewest)
            else "overwrite"
        )
        if note_resolved:
            self.ctx.note(
                f"CONFLICT {label}: {new_path} exists; overwritten by {doc.path} "
                f"(on_conflict={how})"
            )
        write = self._write(
            SET,
            new_path,
            doc,
            Precondition(update_time=target.update_time),
            target,
            label + _overwrote(new_path),
            transform,
        )
        return Group([write, delete_old], children)

    def _write(
        self,
        kind: str,
        path: str,
        doc: Any,
        pre: Precondition,
        before: Any,
        label: str,
        transform: Optional[Callable[[dict, str], dict]],
    ) -> Operation:
        if transform is None:  # the old document's protobuf fields, exactly
            return Operation(
                kind, path, precondition=pre, before=before, fields=doc.pb.fields, label=label
            )
        return Operation(
            kind,
            path,
            transform(doc.to_dict(), path.rsplit("/", 1)[1]),
            precondition=pre,
            before=before,
            label=label,
        )

    def _delete(self, doc: Any, label: str) -> Operation:
        return Operation(
            DELETE,
            doc.path,
            precondition=Precondition(update_time=doc.update_time),
            before=doc,
            label=label,
        )

    def _names(self, doc: Any, mode: str, label: str) -> Optional[list[str]]:
        """The subcollections of `doc` ([] when unchecked); None when refused (noted)."""
        if mode == UNCHECKED:
            return []
        names = list(self.ctx.subcollections(doc))
        if not names:
            return []
        if mode == REFUSE:
            self.ctx.note(
                f"REFUSED {label}: {doc.path} has subcollections "
                f"{', '.join(names)} (subcollections='refuse')"
            )
            return None
        if mode not in (MOVE, DELETE_SUBS):
            raise ValueError(
                f"subcollections must be 'refuse', 'move', 'delete' or 'unchecked', not {mode!r}"
            )
        return names

    def _subcollections(
        self, doc: Any, new_path: Optional[str], mode: str, label: str
    ) -> Optional[Iterable[Group]]:
        """Groups moving (to the same place under `new_path`) or deleting what is under
        `doc`, as its subtree is read, each document after what is under it; [] when
        there is nothing; None when refused."""
        names = self._names(doc, mode, label)
        if names is None:
            return None
        if not names:
            return []
        docs = self.ctx.subtree(doc.path)
        if mode == MOVE:
            assert new_path is not None
            return self._moved(doc, new_path, docs)
        return self._deleted(doc, docs)


PrefixKeys = Optional[Callable[[str], bool]]


class _Target:
    """What the scan keeps of one canonical ID: its canonical document, the newest
    non-canonical document so far, and how many there are."""

    __slots__ = ("canonical", "best", "best_newness", "count", "prefix")

    def __init__(self, prefix: bool) -> None:
        self.canonical: Any = None
        self.best: Any = None
        self.best_newness: tuple = ()  # newness(best): computed once per survivor
        self.count = 0
        self.prefix = prefix  # a declared prefix key (merged once the scan passes it)


def normalize(
    ctx: Any,
    collection: str,
    canonical_of: Callable[[str], Optional[str]],
    *,
    keep: Optional[str] = None,
    on_conflict: Conflict = SKIP,
    subcollections: str = REFUSE,
    transform: Optional[Callable[[dict, str], dict]] = None,
    missing: bool = False,
    prefix_keys: PrefixKeys = None,
) -> Iterator[Any]:
    """Merge every document into its canonical ID.

    `canonical_of(doc_id)` gives the ID a document should have (itself when it is
    canonical, None when unknown: left alone and noted). Per canonical ID, the survivor is
    the newest non-canonical document by `keep` (a field; then update time); it is renamed
    to the canonical ID (resolving an existing canonical document per `on_conflict`;
    `transform(data, canonical_id)` may adjust what is written) and the other
    non-canonical documents are deleted. One pass. The deletes go out as the scan
    proceeds; each survivor is kept until its rename, so a crash never leaves a canonical
    ID without its newest document. A note per canonical ID says how many documents merge
    into it and whether it is created, updated or kept.

    Memory: one survivor (and canonical document) per canonical ID until the scan ends,
    except for the IDs `prefix_keys(canonical_id)` declares prefix keys: every document
    merging into such an ID has an ID that starts with it (`Foo` for `Foo_None_1`), so
    the scan, in name order, has seen all of them once it reaches a name that does not
    start with it; such an ID is merged there and forgotten (memory: the canonical IDs
    that are prefixes of the current name). A document contradicting the declaration
    stops the plan with an error before anything of it is planned.

    missing=True also takes the documents that do not exist but have subcollections
    (ctx.scan(missing=True)): a non-canonical one's subcollections are moved under its
    canonical ID (subcollections="move"; a child already there is skipped, reported),
    deleted ("delete") or refused with a note (default)."""
    renamer = Renamer(ctx)
    targets: dict[str, _Target] = {}  # every canonical ID not merged yet
    open_prefix: list[str] = []  # the prefix keys among them (merged when passed)
    merged = kept = groups = unknown = 0

    def merge(target: str) -> Group:
        nonlocal merged, kept, groups
        found = targets.pop(target)
        kept += found.canonical is not None
        if found.best is None:
            return Group([])
        merged += found.count
        groups += 1
        return _merge_into(
            ctx,
            renamer,
            target,
            found.best,
            found.canonical,
            found.count,
            keep,
            on_conflict,
            subcollections,
            transform,
        )

    for doc in ctx.scan(collection):
        doc_id = doc.id
        if open_prefix and not doc_id.startswith(open_prefix[-1]):
            passed = [t for t in open_prefix if not doc_id.startswith(t)]
            open_prefix = [t for t in open_prefix if doc_id.startswith(t)]
            for done in passed:
                yield merge(done)
        target = canonical_of(doc_id)
        if target is None:
            unknown += 1
            ctx.note(f"unknown ID left alone: {doc_id!r}")
            continue
        found = targets.get(target)
        if found is None:
            found = targets[target] = _Target(check_prefix(doc_id, target, prefix_keys))
            if found.prefix:
                open_prefix.append(target)
                open_prefix.sort(key=len)  # a chain of prefixes of this name: longest last
        elif found.prefix and not doc_id.startswith(target):
            check_prefix(doc_id, target, prefix_keys)  # raises: the declaration is false
        if target == doc_id:
            found.canonical = doc
            continue
        found.count += 1
        if found.best is None:
            found.best, found.best_newness = doc, newness(doc, keep)
            continue
        doc_newness = newness(doc, keep)
        if doc_newness > found.best_newness:
            found.best, doc = doc, found.best
            found.best_newness = doc_newness
        label = f"{doc.path}{ARROW}{collection}/{target}{MERGED_OLDER}"
        loser = renamer._subcollections(doc, None, subcollections, label)
        if loser is None:
            continue
        yield Group([renamer._delete(doc, label)], loser)
    for done in open_prefix:
        yield merge(done)
    for done in sorted(targets):
        yield merge(done)
    if missing:
        yield from _missing_into(ctx, renamer, collection, canonical_of, subcollections)
    ctx.note(_summary(collection, kept, merged, groups, unknown))


def _missing_into(
    ctx: Any,
    renamer: Renamer,
    collection: str,
    canonical_of: Callable[[str], Optional[str]],
    subcollections: str,
) -> Iterator[Group]:
    """The subtrees of missing non-canonical documents, moved or deleted (see normalize)."""
    for doc in ctx.scan(collection, missing=True):
        target = canonical_of(doc.id)
        if target is None:
            ctx.note(f"unknown ID left alone: {doc.id!r} (missing document with subcollections)")
            continue
        if target == doc.id:
            continue
        new_path = f"{collection}/{target}"
        label = f"{doc.path}{ARROW}{new_path} (missing document, subcollections only)"
        children = renamer._subcollections(
            doc, new_path if subcollections == MOVE else None, subcollections, label
        )
        if children:
            yield Group([], children)


def _summary(collection: str, kept: int, merged: int, targets: int, unknown: int) -> str:
    return (
        f"normalize {collection}: {kept} canonical documents kept, {merged} documents "
        f"merged into {targets} canonical IDs, {unknown} unknown IDs left alone"
    )


def _merge_into(
    ctx: Any,
    renamer: Renamer,
    target: str,
    survivor: Any,
    existing: Any,
    count: int,
    keep: Optional[str],
    on_conflict: Conflict,
    subcollections: str,
    transform: Optional[Callable[[dict, str], dict]],
) -> Group:
    """Note what happens to canonical ID `target`, and the group that renames the
    survivor into it."""
    field = on_conflict.field if isinstance(on_conflict, KeepNewest) else keep
    if existing is None:
        what = f"CREATE from {survivor.id} ({_show(survivor, field)})"
    elif on_conflict == SKIP:
        what = "KEEP (on_conflict=skip)"
    elif (
        isinstance(on_conflict, KeepNewest)
        and newness(survivor, field)[:2] <= newness(existing, field)[:2]
    ):
        what = f"KEEP (its {_show(existing, field)} is the newest)"
    else:
        what = f"UPDATE from {survivor.id} ({_show(existing, field)} -> {_show(survivor, field)})"
    ctx.note(f"{target}: {count} to merge -> {what}")
    return renamer.rename(
        survivor,
        target,
        on_conflict=on_conflict,
        subcollections=subcollections,
        target=existing,
        transform=transform,
        note_resolved=False,
    )  # noted just above


UNKNOWN_KEY = ""  # the key of documents whose canonical ID is unknown (never a document id)


class Normalization:
    """`normalize` as a distributable, keyed migration (fsmigrate.distributed): one key per
    canonical ID, so each canonical ID's documents are merged together on one worker.
    Same decisions, notes and operations as `ctx.normalize` with the same arguments.

        normalization = Normalization("users", canonical_of, keep="updated_at")
        source, key, merge, finish = (normalization.source, normalization.key,
                                      normalization.merge, normalization.finish)
        key_is_prefix = normalization.key_is_prefix   # with prefix_keys=...: no shuffle
    """

    def __init__(
        self,
        collection: str,
        canonical_of: Callable[[str], Optional[str]],
        *,
        keep: Optional[str] = None,
        on_conflict: Conflict = SKIP,
        subcollections: str = REFUSE,
        transform: Optional[Callable[[dict, str], dict]] = None,
        prefix_keys: PrefixKeys = None,
    ) -> None:
        from fsmigrate.distributed import scan

        self.collection = collection
        self.canonical_of = canonical_of
        self.keep, self.on_conflict = keep, on_conflict
        self.subcollections, self.transform = subcollections, transform
        self.prefix_keys = prefix_keys
        self.source = scan(collection)

    def key_is_prefix(self, key: str) -> bool:
        """Whether every document merging into canonical ID `key` has an ID starting with
        it (the `prefix_keys` declaration; never the unknown documents' key)."""
        return key != UNKNOWN_KEY and self.prefix_keys is not None and self.prefix_keys(key)

    def key(self, doc: Any) -> str:
        target = self.canonical_of(doc.id)
        return UNKNOWN_KEY if target is None else target

    def merge(self, ctx: Any, key: str, docs: list[Any]) -> Iterator[Any]:
        if key == UNKNOWN_KEY:
            for doc in docs:
                ctx.note(f"unknown ID left alone: {doc.id!r}")
            ctx.count("normalize.unknown", len(docs))
            return
        existing = next((d for d in docs if d.id == key), None)
        others = [d for d in docs if d.id != key]
        if existing is not None:
            ctx.count("normalize.canonical")
        if not others:
            return
        ctx.count("normalize.merged", len(others))
        ctx.count("normalize.targets")
        best = others[0]
        for doc in others[1:]:  # the first of the newest, in name order, as a scan sees it
            if newness(doc, self.keep) > newness(best, self.keep):
                best = doc
        renamer = Renamer(ctx)
        for doc in others:
            if doc is best:
                continue
            label = f"{doc.path}{ARROW}{self.collection}/{key}{MERGED_OLDER}"
            loser = renamer._subcollections(doc, None, self.subcollections, label)
            if loser is not None:
                yield Group([renamer._delete(doc, label)], loser)
        yield _merge_into(
            ctx,
            renamer,
            key,
            best,
            existing,
            len(others),
            self.keep,
            self.on_conflict,
            self.subcollections,
            self.transform,
        )

    def finish(self, ctx: Any, counts: dict[str, int]) -> None:
        ctx.note(
            _summary(
                self.collection,
                counts.get("normalize.canonical", 0),
                counts.get("normalize.merged", 0),
                counts.get("normalize.targets", 0),
                counts.get("normalize.unknown", 0),
            )
        )


def _show(doc: Any, field: Optional[str]) -> str:
    if not field:
        return f"updated {rfc3339(doc.update_time, 'seconds')}"
    value = doc.get(field)
    if isinstance(value, dt.datetime):
        value = rfc3339(value, "seconds")
    return f"{field} {value if value is not None else 'missing'}"


@dataclass(frozen=True)
class MergeStep:
    """What one operation of a rename or merge did to `target` (a document path):
    `merged` (`source` deleted into it), `kept` (`source` deleted, the existing target was
    newer), `create` or `update` (the target written from `source`)."""

    target: str
    source: str
    role: str


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def merge_step(kind: str, path: str, label: Optional[str]) -> Optional[MergeStep]:
    """Read an operation's label back (the labels built above): which canonical document
    it merged into, or None for anything else (moves of subcollections, plain writes).
    Exact: the operation's own path anchors the label, so IDs may hold any text."""
    if not label:
        return None
    if kind == DELETE:
        if not label.startswith(path + ARROW):
            return None
        rest = label[len(path + ARROW) :]
        if rest.endswith(MERGED_OLDER):
            return MergeStep(rest[: -len(MERGED_OLDER)], path, "merged")
        size, odd = divmod(len(rest) - len(_kept_newer("")), 2)
        if size > 0 and not odd and rest == rest[:size] + _kept_newer(rest[:size]):
            return MergeStep(rest[:size], path, "kept")
        return MergeStep(rest, path, "merged") if _parent(rest) == _parent(path) else None
    if kind == CREATE and label.endswith(ARROW + path):
        source = label[: -len(ARROW + path)]
        return MergeStep(path, source, "create") if _parent(source) == _parent(path) else None
    if kind == SET and label.endswith(ARROW + path + _overwrote(path)):
        source = label[: -len(ARROW + path + _overwrote(path))]
        return MergeStep(path, source, "update") if _parent(source) == _parent(path) else None
    return None
