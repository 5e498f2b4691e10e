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

`ctx` offers what plan's ctx offers except `scan` (reads of single documents are fine).
The local runner runs every form (a keyed form holds the documents of a key together,
so memory grows with the largest key, and it keeps every key's documents until the scan
ends); `--runner beam` runs the two forms above and refuses a bare `plan(ctx)`.
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
            groups: dict[str, list[Any]] = {}
            for doc in docs:
                key = checked_key(key_of(doc), doc)
                if key is not None:
                    groups.setdefault(key, []).append(doc)
            for key in sorted(groups):
                yield from merge(ctx, key, groups[key]) or ()
        if forms.finish is not None:
            forms.finish(ctx, dict(ctx.counts))

    return plan


def checked_key(key: Any, doc: Any) -> Optional[str]:
    if key is None or isinstance(key, str):
        return key
    raise TypeError(f"key({doc.path}) returned {type(key).__name__}; it must return a str or None")
