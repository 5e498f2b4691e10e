"""What a migration's plan(ctx) gets: reads, operation constructors, notes. Nothing here
writes; every operation is a value the runner journals and sends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from fsmigrate.engine import tracing
from fsmigrate.firestore.store import Doc, Missing, Store
from fsmigrate.firestore.subtree import check_for
from fsmigrate.normalize import DELETE_SUBS, KEEP, REFUSE, UNCHECKED, Renamer, normalize
from fsmigrate.scripts.operations import (
    CREATE,
    DELETE,
    MUST_NOT_EXIST,
    SET,
    UPDATE,
    Group,
    Operation,
    Precondition,
)

PathLike = Union[str, Doc, Any]


class Barrier:
    """See Context.barrier()."""


class Context:
    """What a migration's plan(ctx) gets: reads, operation constructors, notes."""

    def __init__(
        self,
        store: Store,
        revision: str,
        dry_run: bool,
        page_size: Optional[int],
        note: Any,
        partitions: int = 1,
        read_time: Optional[dt.datetime] = None,
        max_group: int = 0,
        progress: Any = None,
    ) -> None:
        self._store = store
        self.revision = revision
        self.dry_run = dry_run
        self.project = store.target.project
        self.database = store.target.database
        self._page_size = page_size
        self._note = note
        self._partitions = partitions
        # the plan's snapshot: every read of the plan sees the database as it was then
        self.read_time = read_time
        # the most operations one atomic group may hold (a batch); 0: no atomic subtrees
        self.max_group = max_group
        self._notices: set[str] = set()
        self._progress = progress  # told a scan's total (a COUNT first) and its reads
        self.reads = 0  # documents read: returned by scans, looked up by get / get_many
        self.counts: dict[str, int] = {}
        self._checking = False  # a delete's subcollection check has begun (its read-ahead)

    # reads
    def scan(
        self,
        collection: str,
        *,
        page_size: Optional[int] = None,
        group: bool = False,
        where: Sequence[tuple[str, str, Any]] = (),
        partitions: Optional[int] = None,
        missing: bool = False,
    ) -> Iterator[Any]:
        """Every document of a collection (or, with group=True, a collection group), read
        as a stream with flat memory. `partitions` (default: the run's --concurrency)
        splits an unfiltered group scan into parallel parts where the server supports it.

        missing=True yields instead the documents that do NOT exist but have
        subcollections (a scan never sees them): `Missing` values with `.path`, `.id` and
        `.subcollections`, which ctx.delete and ctx.rename take like documents.

        When a progress bar is shown, a COUNT aggregation first gives it the total."""
        if missing:
            if group or where:
                raise ValueError("ctx.scan(missing=True) takes a collection path only")
            return self._counted(self._store.missing(collection, read_time=self.read_time))
        docs = self._store.scan(
            collection,
            page_size=page_size or self._page_size,
            group=group,
            where=where,
            partitions=partitions or self._partitions,
            notice=self._notice_once,
            read_time=self.read_time,
        )
        if getattr(self._progress, "wants_total", False):
            total = self._store.count(
                collection, group=group, where=where, read_time=self.read_time
            )
            self._progress.expect(total, "doc")
            docs = self._shown(docs)
        return self._counted(
            tracing.traced(
                "fsmigrate.scan",
                docs,
                revision=self.revision,
                collection=collection,
                group=group,
                filtered=bool(where),
            )
        )

    def _shown(self, docs: Iterator[Any]) -> Iterator[Any]:
        """Tell the progress bar how many documents were read, every 50."""
        unshown = 0
        for doc in docs:
            unshown += 1
            if unshown == 50:
                self._progress.read(unshown)
                unshown = 0
            yield doc
        if unshown:
            self._progress.read(unshown)

    def _counted(self, docs: Iterator[Any]) -> Iterator[Any]:
        for doc in docs:
            self.reads += 1
            yield doc

    def _notice_once(self, text: str) -> None:
        if text not in self._notices:
            self._notices.add(text)
            self._note(text)

    def get(self, path: str) -> Optional[Doc]:
        found = self._store.get(_path_of(path), read_time=self.read_time)
        self.reads += 1
        return found

    def get_many(self, paths: Iterable[str]) -> dict[str, Optional[Doc]]:
        """Read several documents in one call; None for the missing ones."""
        found = self._store.get_many((_path_of(p) for p in paths), read_time=self.read_time)
        self.reads += len(found)
        return found

    # operations
    def delete(self, doc: Any, *, subcollections: str = REFUSE) -> Union[Operation, Group]:
        """Delete `doc` (from ctx.scan / ctx.get), guarded by its update time and archived.
        Firestore does not delete what is under a document, so its subcollections decide:
        "refuse" (default): a document that has any is left alone, with a note naming
        them (the documents of a batch are checked together, by a few keys-only
        queries); "delete": its whole subtree is deleted too, each document guarded and
        archived like `doc` (restore brings all back), read as one stream: one atomic
        commit with `doc` when it fits in a batch, otherwise in stages, each document
        after what is under it, `doc` last; "keep": delete the document and knowingly
        leave its subcollections (no check). A `Missing` document from
        ctx.scan(missing=True) has only its subtree to delete. Yield the result."""
        if subcollections in (KEEP, UNCHECKED):
            if isinstance(doc, Missing):
                raise ValueError(
                    f"{doc.path} does not exist: only its subcollections can be deleted "
                    "(subcollections='delete')"
                )
            return Operation(DELETE, doc.path, None, _guard(doc, "delete"), doc)
        if subcollections not in (REFUSE, DELETE_SUBS):
            raise ValueError(
                f"subcollections must be 'refuse', 'delete' or 'keep', not {subcollections!r}"
            )
        if subcollections == REFUSE and not isinstance(doc, Missing):
            # checked by the runner for a whole batch at once: its names read from here on
            op = Operation(DELETE, doc.path, None, _guard(doc, "delete"), doc)
            op.unless_subcollections = True
            if not self._checking and self.max_group:
                self._checking = True
                check_for(self._store, self.read_time).expect(doc.path, 2 * self.max_group)
            return op
        if not isinstance(doc, Missing):
            _guard(doc, "delete")
        return Renamer(self).delete(doc, subcollections)

    def update(self, doc: Doc, fields: Mapping[str, Any]) -> Operation:
        return Operation(UPDATE, doc.path, dict(fields), _guard(doc, "update"), doc)

    def set(self, target: PathLike, data: Mapping[str, Any]) -> Operation:
        """Overwrite a document. From a snapshot: guarded by its update_time. From a path:
        the runner reads the document just before writing, archives and guards it."""
        if isinstance(target, Doc):
            return Operation(SET, target.path, dict(data), _guard(target, "set"), target)
        return Operation(SET, _path_of(target), dict(data))

    def create(self, path: PathLike, data: Mapping[str, Any]) -> Operation:
        return Operation(CREATE, _path_of(path), dict(data), MUST_NOT_EXIST)

    def subcollections(self, path: PathLike) -> list[str]:
        """Ids of the subcollections of a document."""
        if isinstance(path, Missing):
            return list(path.subcollections)
        return self._store.subcollections(_path_of(path), read_time=self.read_time)

    def subtree(self, path: PathLike) -> Iterator[Doc]:
        """Every document under a document (in its subcollections, at any depth), in name
        order, each before what is under it: one query, streamed with flat memory."""
        return self._counted(self._store.descendants(_path_of(path), read_time=self.read_time))

    def rename(
        self,
        doc: Doc,
        new_id: str,
        *,
        on_conflict: Any = "skip",
        subcollections: str = "refuse",
        transform: Optional[Callable[[dict, str], dict]] = None,
    ) -> Group:
        """Give `doc` a new id in its collection: create the new document with its data and
        delete the old one in ONE commit. If the new id exists: on_conflict="skip"
        (default, reported), "overwrite", or keep_newest(field). A document with
        subcollections is refused (default, reported) unless subcollections="move" or
        "delete". Yield the result."""
        return Renamer(self).rename(
            doc, new_id, on_conflict=on_conflict, subcollections=subcollections, transform=transform
        )

    def normalize(
        self,
        collection: str,
        canonical_of: Callable[[str], Optional[str]],
        *,
        keep: Optional[str] = None,
        on_conflict: Any = "skip",
        subcollections: str = "refuse",
        transform: Optional[Callable[[dict, str], dict]] = None,
        missing: bool = False,
        prefix_keys: Optional[Callable[[str], bool]] = None,
    ) -> Iterator[Any]:
        """Merge every document of `collection` into its canonical id (see
        fsmigrate.normalize.normalize; missing=True also moves or deletes the subtrees of
        missing documents; `prefix_keys` keeps memory flat). Use:
        `yield from ctx.normalize(...)`."""
        return normalize(
            self,
            collection,
            canonical_of,
            keep=keep,
            on_conflict=on_conflict,
            subcollections=subcollections,
            transform=transform,
            missing=missing,
            prefix_keys=prefix_keys,
        )

    def barrier(self) -> Barrier:
        """Yield this between operations whose order matters: everything yielded before it
        has landed before anything after it is sent (batches otherwise overlap)."""
        return Barrier()

    def note(self, text: str) -> None:
        """Flag something for the report (e.g. documents left alone and why)."""
        self._note(str(text))

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name`; a distributable script's `finish(ctx, counts)`
        gets the sums over every worker."""
        self.counts[name] = self.counts.get(name, 0) + n


def _guard(doc: Any, what: str) -> Precondition:
    if not isinstance(doc, Doc):
        raise TypeError(
            f"ctx.{what}() takes a document from ctx.scan()/ctx.get(), got {type(doc).__name__}"
        )
    return Precondition(update_time=doc.update_time)


def _path_of(target: PathLike) -> str:
    if isinstance(target, str):
        return target
    path = getattr(target, "path", None)
    if isinstance(path, str):
        return path
    raise TypeError(f"expected a document path, got {type(target).__name__}")
