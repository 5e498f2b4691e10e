"""Migration scripts that can be split across workers (the Beam runner) as well as run here.

A generator `plan(ctx)` sees the whole run in one process: it cannot be split. A script
that declares a source and a function per document, or per key, can be:

    from fsmigrate.distributed import scan

    source = scan("users")                 # what is read (split into ranges by the runner)

    def each(ctx, doc):                    # per document: yield its operations
        if doc.get("expired"):
            yield ctx.delete(doc)

or, when documents must be considered together (merges), a keyed form that becomes a
GroupByKey:

    source = scan("processor_heartbeats")

    def key(doc):                          # a str, or None: the document is left alone
        return canonical_id(doc.id)

    def merge(ctx, key, docs):             # every document of one key, in name order
        ...

    def finish(ctx, counts):               # optional: once, after all keys, with the sums
        ctx.note(f"{counts.get('merged', 0)} merged")     # of ctx.count(name, n) calls

    def key_is_prefix(key):                # optional: True when every document of `key`
        return key.endswith("Processor")   # has an ID that starts with `key`

Declaring prefix keys (`key_is_prefix`) lets a keyed form skip the shuffle for them: the
documents of such a key lie together in name order (`Foo`, `Foo_1`, `Foo_None_2`...), so
a scan in name order has all of them once it reaches a name that does not start with the
key, and merges them there (memory: one key's documents). On Beam the ranges are cut
where a prefix key starts (`at_key_starts`), so each range merges the prefix keys whose
documents it holds and no GroupByKey is needed for them; keys that are not declared go
through the shuffle as before. A document whose ID does not start with its declared
prefix key stops the run with an error before anything of it is planned.

`ctx` offers what plan's ctx offers except `scan` (reads of single documents are fine).
The local runner runs every form (a keyed form holds the documents of a key together,
so memory grows with the largest key, and it keeps the documents of keys that are not
prefix keys until the scan ends); `--runner beam` runs the two forms above and refuses a
bare `plan(ctx)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

PLAN = "plan"
EACH = "each"
KEYED = "keyed"


@dataclass(frozen=True)
class Source:
    """What a distributable migration reads: a collection (or collection group), with
    optional equality filters."""

    collection: str
    group: bool = False
    where: tuple = ()


def scan(
    collection: str, *, group: bool = False, where: Sequence[tuple[str, str, Any]] = ()
) -> Source:
    """Declare the documents a distributable migration reads."""
    return Source(collection, group, tuple(tuple(w) for w in where))


@dataclass(frozen=True)
class Forms:
    """The forms a migration module declares."""

    plan: Optional[Callable[..., Any]] = None
    source: Optional[Source] = None
    each: Optional[Callable[..., Any]] = None
    key: Optional[Callable[..., Any]] = None
    merge: Optional[Callable[..., Any]] = None
    finish: Optional[Callable[..., Any]] = None
    key_is_prefix: Optional[Callable[[str], bool]] = None

    @property
    def distributed(self) -> Optional[str]:
        """EACH or KEYED when Beam can split it, else None."""
        if self.source is None:
            return None
        if self.each is not None:
            return EACH
        if self.key is not None and self.merge is not None:
            return KEYED
        return None

    @property
    def kind(self) -> str:
        return PLAN if self.plan is not None else (self.distributed or PLAN)


def forms_of(module: Any) -> tuple[Forms, Optional[str]]:
    """The module's forms, and what is wrong with them (None when they are usable)."""

    def fn(name: str) -> Optional[Callable[..., Any]]:
        value = getattr(module, name, None)
        return value if callable(value) else None

    source = getattr(module, "source", None)
    forms = Forms(
        fn("plan"),
        source if isinstance(source, Source) else None,
        fn("each"),
        fn("key"),
        fn("merge"),
        fn("finish"),
        fn("key_is_prefix"),
    )
    if source is not None and not isinstance(source, Source):
        return forms, (
            "`source` must be declared with fsmigrate.distributed.scan(...), got "
            f"{type(source).__name__}"
        )
    if forms.source is not None and forms.distributed is None:
        return forms, (
            "declares a `source` but neither `def each(ctx, doc)` nor both "
            "`def key(doc)` and `def merge(ctx, key, docs)`"
        )
    if forms.each is not None and forms.key is not None:
        return forms, "declares both `each` and `key`: choose one form"
    if forms.plan is None and forms.distributed is None:
        return forms, (
            "needs `def plan(ctx):` that yields operations, or a `source = "
            "scan(...)` with `def each(ctx, doc)` or `def key(doc)` and "
            "`def merge(ctx, key, docs)`"
        )
    return forms, None


def local_plan(forms: Forms) -> Callable[[Any], Iterator[Any]]:
    """The generator the local runner consumes for any form."""
    if forms.plan is not None:
        return forms.plan
    source, each, key_of, merge = forms.source, forms.each, forms.key, forms.merge
    # forms_of accepted these forms: without `plan` there is a source and `each`, or
    # both `key` and `merge`.
    assert source is not None

    def plan(ctx: Any) -> Iterator[Any]:
        docs = ctx.scan(source.collection, group=source.group, where=source.where)
        if each is not None:
            for doc in docs:
                yield from each(ctx, doc) or ()
        else:
            assert key_of is not None and merge is not None
            groups: dict[str, list[Any]] = {}  # keys that are not prefix keys
            running = PrefixGroups(None if source.group else forms.key_is_prefix)
            for doc in docs:
                for done_key, done in running.passed(doc.id):
                    yield from merge(ctx, done_key, done) or ()
                key = checked_key(key_of(doc), doc)
                if key is not None and not running.add(key, doc):
                    groups.setdefault(key, []).append(doc)
            for done_key, done in running.rest():
                yield from merge(ctx, done_key, done) or ()
            for key in sorted(groups):
                yield from merge(ctx, key, groups[key]) or ()
        if forms.finish is not None:
            forms.finish(ctx, dict(ctx.counts))

    return plan


def checked_key(key: Any, doc: Any) -> Optional[str]:
    if key is None or isinstance(key, str):
        return key
    raise TypeError(f"key({doc.path}) returned {type(key).__name__}; it must return a str or None")


def check_prefix(doc_id: str, key: str, key_is_prefix: Optional[Callable[[str], bool]]) -> bool:
    """Whether `key` is a declared prefix key (never the empty key); a document of such a
    key whose ID does not start with it makes the declaration false: ValueError."""
    if key_is_prefix is None or not key or not key_is_prefix(key):
        return False
    if not doc_id.startswith(key):
        raise ValueError(
            f"document {doc_id!r} has the key {key!r}, which the script declares a prefix "
            "key (the ID of every document of it starts with it), but its ID does not "
            "start with it: fix the script's key_is_prefix (or prefix_keys)"
        )
    return True


def at_key_starts(points: Sequence[str], key_is_prefix: Callable[[str], bool]) -> list[str]:
    """Split points (document paths, in order) moved back to where a prefix key starts: a
    point whose ID has a declared prefix key (`Foo_None_2`, of `Foo`) moves to its shortest
    one (`Foo`), so the documents of every prefix key, and of the keys nested in it, lie
    in one range and no range has to read past its end. The points stay in order
    (moving is monotonic); the ones that meet are kept once."""
    moved: list[str] = []
    for point in points:
        parent, _, doc_id = point.rpartition("/")
        start = next(
            (doc_id[:n] for n in range(1, len(doc_id)) if key_is_prefix(doc_id[:n])), doc_id
        )
        path = f"{parent}/{start}"
        if not moved or path > moved[-1]:
            moved.append(path)
    return moved


class PrefixGroups:
    """The documents of prefix keys (see the module's docstring) while a scan in name order
    goes on: `add` each document, and merge what `passed` returns before it; `rest` at the
    end. Holds the keys that are prefixes of the current name, and their documents."""

    def __init__(self, key_is_prefix: Optional[Callable[[str], bool]]) -> None:
        self.key_is_prefix = key_is_prefix
        self.open: dict[str, list[Any]] = {}  # a chain of prefixes of the current name
        self.longest = ""

    def passed(self, doc_id: str) -> list[tuple[str, list[Any]]]:
        """The groups whose documents all came before `doc_id` (no more can come)."""
        if not self.open or doc_id.startswith(self.longest):
            return []
        done = [(k, docs) for k, docs in self.open.items() if not doc_id.startswith(k)]
        for key, _ in done:
            del self.open[key]
        self.longest = max(self.open, key=len, default="")
        return sorted(done)

    def add(self, key: str, doc: Any) -> bool:
        """Keep `doc` with its prefix key; False when `key` is not one."""
        held = self.open.get(key)
        if held is not None and doc.id.startswith(key):  # known to be one
            held.append(doc)
            return True
        if not check_prefix(doc.id, key, self.key_is_prefix):
            return False
        self.open.setdefault(key, []).append(doc)
        if len(key) > len(self.longest):
            self.longest = key
        return True

    def rest(self) -> list[tuple[str, list[Any]]]:
        done = sorted(self.open.items())
        self.open.clear()
        self.longest = ""
        return done
