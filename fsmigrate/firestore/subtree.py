"""What is under documents: which of many documents have anything under them (for the
subcollection check of ctx.delete's default), and a document's subtree as a stream whose
every document comes after what is under it (for subtree deletes and moves).

Both read Firestore's name order, in which a document's subtree follows the document
directly, before its next sibling (`users/u1`, `users/u1/orders/o1`,
`users/u1/orders/o1/lines/l1`, `users/u1/prefs/p1`, then `users/u1x`).

**Which documents have a subtree** (`with_subtrees`): instead of one ListCollectionIds
call per document, keys-only kindless queries over the documents' name range read the
documents themselves and whatever follows them. A name that is under a document shows it
has a subtree; a name that is neither a document asked about nor under one is a gap (a
document of the collection that is not being deleted, and what is under it). Each query
starts after a document and asks for as many names as documents it decides (the next
ones expected, and one more that shows whether the last has a subtree): its limit bounds
the names read that are not needed (what is under a refused document, gaps). The first query
expects all the documents (deleted in a row, they are decided by one query, reading one
name each); after a surprise the window shrinks (to as many as came in a row before a
gap; by half after a subtree), and it grows again while the names come as expected. So
sparse deletes (a filter keeping one document in a hundred) cost at most the first
query's names plus one query and one name per document, never a read of the collection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from fsmigrate.firestore.store import Store

MAX_WINDOW = 1000  # the most names one query asks for (a batch holds at most 500 documents)


def name_key(path: str) -> tuple[str, ...]:
    """The order Firestore gives document names: segment by segment, each segment by its
    UTF-8 bytes (the order of Python's code points), a document before what is under it."""
    return tuple(path.split("/"))


def under(path: str, ancestor: str) -> bool:
    return path.startswith(ancestor + "/")


def with_subtrees(
    store: Store,
    paths: Iterable[str],
    *,
    read_time: Optional[dt.datetime] = None,
    first_window: Optional[int] = None,
) -> set[str]:
    """The documents among `paths` that have anything under them (a document at any
    depth, as of `read_time`): what ListCollectionIds would show non-empty, found with a
    few keys-only queries instead of one call per document (see the module's docstring).
    A document that does not exist is judged by what is under it, like the listing."""
    order = sorted(set(paths), key=name_key)
    found: set[str] = set()
    i = 0  # order[:i] are decided
    window = min(MAX_WINDOW, first_window or len(order))
    while i < len(order):
        # the names after order[i]: what is under it comes first, then the next ones
        # expected, and one more, which shows whether the last expected has a subtree
        limit = min(len(order) - i, window)
        names = store.names_from(order[i], after=True, limit=limit, read_time=read_time)
        j, seen, grow = i, 0, True
        for name in names:
            key = name_key(name)
            while j < len(order) and name_key(order[j]) < key:
                if under(name, order[j]):  # all before `name` was read: decided
                    found.add(order[j])
                    if grow:  # what is under it is read up to the limit: halve it
                        grow, window = False, max(1, window // 2)
                j += 1
            if j < len(order) and order[j] == name:
                seen += 1  # decided by what follows it
            elif grow:  # a gap: as many as came in a row before it
                grow, window = False, max(1, seen)
        if len(names) < limit:  # nothing more in the database: all decided
            break
        i = j  # order[j] comes after every name read, or is the last one
        if grow:
            window = min(MAX_WINDOW, window * 4)
    return found


def post_order(docs: Iterable[Any]) -> Iterator[Any]:
    """`docs` in name order (each before what is under it), reordered so that each comes
    after everything under it, keeping only the chain of ancestors of the current one in
    memory (its depth): `a/1, a/1/b/2, a/1/b/2/c/3, a/4` -> `c/3, b/2, a/1, a/4`."""
    chain: list[Any] = []
    for doc in docs:
        while chain and not under(doc.path, chain[-1].path):
            yield chain.pop()
        chain.append(doc)
    while chain:
        yield chain.pop()
