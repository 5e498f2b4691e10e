"""What is under documents: which of many documents have anything under them (for the
subcollection check of ctx.delete's default), and a document's subtree as a stream whose
every document comes after what is under it (for subtree deletes and moves).

Both read Firestore's name order, in which a document's subtree follows the document
directly, before its next sibling (`users/u1`, `users/u1/orders/o1`,
`users/u1/orders/o1/lines/l1`, `users/u1/prefs/p1`, then `users/u1x`).

**Which documents have a subtree** (`SubtreeCheck`): instead of one ListCollectionIds
call per document, keys-only kindless queries read the names that follow the documents
being deleted. A name under a document shows it has a subtree; a name that is neither a
document asked about nor under one is a gap (a document that is not being deleted, and
what is under it). A query starts after the first document not decided yet and asks for
a window of names: its limit bounds the names read that are not needed (what is under a
refused document, gaps). The first window is two batches; after a surprise it shrinks
(to as many as came in a row before a gap; by half after a subtree), and it grows four
times while the names come as expected, up to `MAX_WINDOW`. At the plan's read time the
names a query read past a batch serve the next batches, and while the deletes come in a
row the next window is read on a thread as the plan goes on (the first one too, from the
plan's first delete on: `expect`). So deletes in a row cost about one query per 20
batches, none waited for; sparse deletes (a filter keeping one document in a hundred) at
most one query and one name per document once the window has shrunk, never a read of the
collection.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

from fsmigrate.firestore.store import Store

MAX_WINDOW = 10_000  # the most names one query asks for (20 batches of 500, ~1 MB)


def name_key(path: str) -> tuple[str, ...]:
    """The order Firestore gives document names: segment by segment, each segment by its
    UTF-8 bytes (the order of Python's code points), a document before what is under it."""
    return tuple(path.split("/"))


def under(path: str, ancestor: str) -> bool:
    return path.startswith(ancestor + "/")


class _Ahead:
    """A query read on a thread of its own while the plan goes on."""

    def __init__(self, after: str, limit: int, read: Callable[[], list[str]]) -> None:
        self.after, self.limit = after, limit
        self._done = threading.Event()
        self._names: list[str] = []
        self._error: Optional[BaseException] = None
        threading.Thread(
            target=self._run, args=(read,), name="fsmigrate-subtree-ahead", daemon=True
        ).start()

    def _run(self, read: Callable[[], list[str]]) -> None:
        try:
            self._names = read()
        except BaseException as exc:  # raised where the names are used
            self._error = exc
        finally:
            self._done.set()

    def names(self) -> tuple[list[str], bool]:
        """(names, complete): complete when there were fewer than asked for."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._names, len(self._names) < self.limit


class SubtreeCheck:
    """Which documents have a subtree, batch after batch of one plan (see the module's
    docstring). At a read time, the names a query read past a batch are kept for the
    next batches, with the window; while the deletes come in a row, the next window is
    read on a thread while the plan goes on (pipelined with the batches): deletes in a
    row wait for about no query. Thread-safe."""

    def __init__(self, store: Store, read_time: Optional[dt.datetime] = None) -> None:
        self.store = store
        self.read_time = read_time
        self.window = 0  # 0: twice the first batch's size (the next batch's names too)
        # every name after `_after` up to the last of `_names` (to the end when
        # `_complete`) is in `_names`: what the last query read past its batch
        self._after: Optional[str] = None
        self._names: list[str] = []
        self._complete = False
        self._ahead: Optional[_Ahead] = None  # the names after the last of `_names`
        self._lock = threading.Lock()

    def expect(self, first: str, window: int) -> None:
        """The plan's first document to check is `first` (known before its batch is
        full): at the read time, start reading the `window` names after it on a thread,
        so the first batch waits for no query either. Nothing when names are read or kept
        already."""
        if self.read_time is None:
            return
        with self._lock:
            if self._ahead is None and self._after is None:
                window = min(MAX_WINDOW, window)
                self._ahead = _Ahead(first, window, lambda: self._query(first, window))

    def find(self, paths: Iterable[str]) -> set[str]:
        """The documents among `paths` that have anything under them (a document at any
        depth, as of the read time): what ListCollectionIds would show non-empty. A
        document that does not exist is judged by what is under it, like the listing."""
        order = sorted(set(paths), key=name_key)
        with self._lock:
            return self._find(order) if order else set()

    def _find(self, order: list[str]) -> set[str]:
        found: set[str] = set()
        keys = [name_key(path) for path in order]
        window = self.window or min(MAX_WINDOW, 2 * len(order))
        i = 0  # order[:i] are decided
        known = self._kept(order[0])
        read: Optional[str] = None  # the last name of the names just decided from
        while True:
            if known is not None:
                names, complete = known
                known = None
            else:  # after order[i]: what is under it, then the next ones, and beyond
                names, complete = self._read(order[i], read, window)
            j, seen, grow, stop = i, 0, True, len(names)
            for at, name in enumerate(names):
                key = name_key(name)
                while j < len(order) and keys[j] < key:
                    if under(name, order[j]):  # all before `name` was read: decided
                        found.add(order[j])
                        if grow:  # what is under it is read up to the limit: halve it
                            grow, window = False, max(1, window // 2)
                    j += 1
                if j == len(order):
                    stop = at  # all decided: the rest is kept for the next batch
                    break
                if order[j] == name:
                    seen += 1  # decided by what follows it
                elif grow:  # a gap: as many as came in a row before it
                    grow, window = False, max(1, seen)
            if grow:
                window = min(MAX_WINDOW, window * 4)
            if complete or j == len(order):
                break
            i = j  # order[j] comes after every name read, or is the last one
            read = names[-1]
        self.window = window
        self._keep(order[-1], names[stop:], complete)
        if grow and not complete and self.read_time is not None and self._names:
            after = self._names[-1]  # deletes in a row: read on while the plan goes on
            if self._ahead is None or self._ahead.after != after:
                self._ahead = _Ahead(after, window, lambda: self._query(after, window))
        return found

    def _read(self, start: str, read: Optional[str], window: int) -> tuple[list[str], bool]:
        """(names, complete): the names after `start` (a document not decided yet), or,
        read ahead already, those after `read`, the last name decided from, before it."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.after == (start if read is None else read):
            return ahead.names()
        names = self._query(start, window)
        return names, len(names) < window

    def _query(self, after: str, limit: int) -> list[str]:
        return self.store.names_from(after, after=True, limit=limit, read_time=self.read_time)

    def _kept(self, first: str) -> Optional[tuple[list[str], bool]]:
        """The names kept from the last query, when they follow on before `first`."""
        after, self._after = self._after, None
        if after is None or self.read_time is None:  # (without a snapshot: read again)
            if self._ahead is not None and self._ahead.after != first:  # (`expect`'s)
                self._ahead = None
            return None
        if not name_key(first) > name_key(after) or under(first, after):
            self._ahead = None
            return None
        return self._names, self._complete

    def _keep(self, last: str, rest: list[str], complete: bool) -> None:
        """Keep `rest`, the names read after `last` (the batch's last document): what is
        under it first, and then the names that follow it."""
        skip = 0
        while skip < len(rest) and under(rest[skip], last):
            skip += 1
        rest = rest[skip:]
        if rest or complete:
            self._after, self._names, self._complete = last, rest, complete


def with_subtrees(
    store: Store, paths: Iterable[str], *, read_time: Optional[dt.datetime] = None
) -> set[str]:
    """`SubtreeCheck.find` of one set of documents."""
    return SubtreeCheck(store, read_time).find(paths)


_CHECKS: weakref.WeakKeyDictionary[Store, SubtreeCheck] = weakref.WeakKeyDictionary()
_CHECKS_LOCK = threading.Lock()


def check_for(store: Store, read_time: Optional[dt.datetime]) -> SubtreeCheck:
    """The check of a plan's batches: one per store and read time (a new read time, a
    new plan, starts over)."""
    with _CHECKS_LOCK:
        check = _CHECKS.get(store)
        if check is None or check.read_time != read_time:
            check = _CHECKS[store] = SubtreeCheck(store, read_time)
        return check


def post_order(docs: Iterable[Any]) -> Iterator[Any]:
    """`docs` in name order (each before what is under it), reordered so that each comes
    after everything under it, keeping only the chain of ancestors of the current one in
    memory (its depth): `a/1, a/1/b/2, a/1/b/2/c/3, a/4` -> `c/3, b/2, a/1, a/4`."""
    chain: list[tuple[str, Any]] = []  # (the path and a slash, the document)
    for doc in docs:
        path = doc.path
        while chain and not path.startswith(chain[-1][0]):
            yield chain.pop()[1]
        chain.append((path + "/", doc))
    while chain:
        yield chain.pop()[1]
