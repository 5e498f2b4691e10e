"""What a migration costs: documents read, writes, deletes, bytes archived, time at the limits.

A dry-run records it as its estimate; an apply records the same figures as what it
actually did (`actual`), so the two can be compared. Pure: no I/O.

- reads: documents the plan read (returned by scans, looked up by get / get_many), plus
  the document each blind `set(path, ...)` reads before it is written;
- writes: set, update and create operations; deletes: delete operations (an apply counts
  those that committed);
- archive_bytes: the serialized size of the before-images the apply keeps (under the
  migration's archive policy: all of each document, none with "paths", or what its
  function keeps);
- seconds_at_ramp: how long the writes take at the ramp schedule and --max-rate (None
  when nothing limits the rate, as on the emulator by default).

An apply's actuals also have `seconds` (how long it took) and `waited_seconds` (how much
of that it spent waiting for Firestore to answer again: docs/network-failures.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from fsmigrate.engine.traffic import Limits
from fsmigrate.scripts.operations import DELETE, KINDS, Operation
from fsmigrate.words import plural

KEYS = ("reads", "writes", "deletes", "archive_bytes", "seconds_at_ramp")


@dataclass
class Tally:
    """Counted while a run plans and journals its batches."""

    blind_reads: int = 0
    archive_bytes: int = 0

    def add(
        self,
        batch: Iterable[Operation],
        blind_reads: int = 0,
        size: Optional[Callable[[Any], int]] = None,
    ) -> None:
        """A journaled batch (its blind sets read), how many blind sets it read, and what
        the run keeps of a before-image (`size`: its archive policy)."""
        self.blind_reads += blind_reads
        size = size or document_size
        for op in batch:
            if op.before is not None:
                self.archive_bytes += size(op.before)


def document_size(before: Any) -> int:
    """The bytes of a before-image as archived (its serialized `Document` protobuf)."""
    size = getattr(before, "document_size", None)
    return size() if size is not None else len(before.document_bytes())


def figures(
    *, reads: int, counts: Mapping[str, int], archive_bytes: int, limits: Optional[Limits]
) -> dict[str, Any]:
    """The estimate (or actuals) of one run, from its operation counts by kind."""
    deletes = int(counts.get(DELETE, 0))
    writes = sum(int(counts.get(k, 0)) for k in KINDS if k != DELETE)
    return {
        "reads": reads,
        "writes": writes,
        "deletes": deletes,
        "archive_bytes": archive_bytes,
        "seconds_at_ramp": _seconds(limits, writes + deletes),
    }


def total(items: Sequence[Mapping[str, Any]], limits: Optional[Limits]) -> dict[str, Any]:
    """The sum of several runs' figures; the time is that of all their operations in one
    command (the ramp carries on from one migration to the next)."""
    out: dict[str, Any] = {k: sum(int(i.get(k) or 0) for i in items) for k in KEYS[:4]}
    out["seconds_at_ramp"] = _seconds(limits, out["writes"] + out["deletes"])
    if items and all(i.get("seconds") is not None for i in items):
        out["seconds"] = round(sum(float(i["seconds"]) for i in items), 3)
        out["waited_seconds"] = round(sum(float(i.get("waited_seconds") or 0) for i in items), 3)
    return out


def _seconds(limits: Optional[Limits], ops: int) -> Optional[float]:
    seconds = limits.seconds_for(ops) if limits is not None else None
    return None if seconds is None else round(seconds, 3)


def describe(fig: Mapping[str, Any]) -> str:
    """One line: '1,053 reads, 5 writes, 1,035 deletes, 396.5 KB to archive, 2.1 s at the
    rate limits' (an apply's figures, which have the `seconds` it took: 'archived')."""
    done = fig.get("seconds") is not None
    text = (
        f"{plural(fig['reads'], 'read')}, {plural(fig['writes'], 'write')}, "
        f"{plural(fig['deletes'], 'delete')}, "
        f"{human_bytes(fig['archive_bytes'])} {'archived' if done else 'to archive'}"
    )
    if fig.get("seconds") is not None:
        text += f", in {human_seconds(fig['seconds'])}"
        if fig.get("waited_seconds"):
            text += f" ({human_seconds(fig['waited_seconds'])} of it waiting for Firestore)"
    if fig.get("seconds_at_ramp") is not None:
        text += f", {human_seconds(fig['seconds_at_ramp'])} at the rate limits"
    return text


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return plural(n, "byte") if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n:,} bytes"


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:,.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"
