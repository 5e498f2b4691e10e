"""`fsmigrate check heartbeats`: the health of `processor_heartbeats`, as a check plugin.

Registered in pyproject.toml (entry-point group `fsmigrate.checks`). The computation
(`assess`, `Health`) is pure; `heartbeats()` streams the collection through the store and
turns the verdict into a `checks.CheckResult`: `details` is `Health.to_json()` (the JSON
documented in the README, "Health check"), `lines` the text report, `metrics` the gauges
of `--format openmetrics`, `series` the time series that `--format html` draws (legacy
documents written per hour or day, and the documents by time of their last write, with the
alarm thresholds).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from fsmigrate import checks
from fsmigrate.checks import CheckResult, Metric, Option, Point, Series
from fsmigrate.heartbeats.classifier import (
    CANONICAL_KINDS,
    COLLECTION,
    KINDS,
    LEGACY_KINDS,
    UNKNOWN,
    Classifier,
)
from fsmigrate.times import format_window, parse_window, rfc3339

DEFAULT_MAX_DOCS = 50
DEFAULT_WINDOW = "1h"
DEFAULT_HISTORY = "7d"
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
HOURLY_UP_TO = dt.timedelta(days=7)  # longer histories are charted per day
TEXT_SAMPLE = 20  # IDs listed per kind in the text report (--format json lists all)
KIND_LABELS = {
    "canonical_processor": "canonical processor",
    "canonical_phase2": "canonical phase 2",
    "legacy_run": "legacy run-suffixed",
    "legacy_date": "legacy date-suffixed",
    "unknown": "unknown",
}

_default = Classifier()


@dataclass
class Health:
    """What operators check after a cleanup. `to_json()` is the stable, documented form.

    A document's activity time is its `last_heartbeat` (its `update_time` when that field
    is missing or not a timestamp). Canonical documents are overwritten on every beat, so
    only the others add documents: the growth per day is the number of non-canonical
    documents active within the window, scaled to a day.
    """

    collection: str
    checked_at: dt.datetime
    window: dt.timedelta
    max_docs: int
    total: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    updated_in_window: int = 0
    new_in_window: int = 0
    legacy_in_window: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    history: dt.timedelta = DAY * 7
    before_history: int = 0  # documents last active before the charts' first bucket
    written: dict[int, int] = field(default_factory=dict)  # bucket -> documents
    legacy_written: dict[int, int] = field(default_factory=dict)  # bucket -> legacy ones

    @property
    def span(self) -> dt.timedelta:
        """What the charts cover: the history, and at least the window."""
        return max(self.history, self.window)

    @functools.cached_property
    def bucket(self) -> dt.timedelta:
        return HOUR if self.span <= HOURLY_UP_TO else DAY

    def _bucket_of(self, when: dt.datetime) -> int:
        return math.floor(when.timestamp() / self.bucket.total_seconds())

    @functools.cached_property
    def buckets(self) -> range:
        return range(
            self._bucket_of(self.checked_at - self.span), self._bucket_of(self.checked_at) + 1
        )

    @property
    def legacy(self) -> int:
        return sum(self.by_kind[k] for k in LEGACY_KINDS)

    @property
    def growth_per_day(self) -> float:
        return round(self.new_in_window * (dt.timedelta(days=1) / self.window), 1)

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.total > self.max_docs:
            out.append(
                f"{self.total} documents in {self.collection}, more than the "
                f"{self.max_docs} allowed"
            )
        if self.legacy:
            out.append(f"{self.legacy} legacy-format documents (expected 0)")
        if self.legacy_in_window:
            out.append(
                f"{len(self.legacy_in_window)} legacy documents written in the last "
                f"{format_window(self.window)}: an old image is still running"
            )
        return out

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def add(self, doc_id: str, kind: str, active_at: dt.datetime) -> None:
        self.total += 1
        self.by_kind[kind] += 1
        if kind == UNKNOWN:
            self.unknown_ids.append(doc_id)
        self._chart(kind, active_at)
        if active_at < self.checked_at - self.window:
            return
        self.updated_in_window += 1
        if kind not in CANONICAL_KINDS:
            self.new_in_window += 1
        if kind in LEGACY_KINDS:
            self.legacy_in_window.append(doc_id)

    def _chart(self, kind: str, active_at: dt.datetime) -> None:
        buckets = self.buckets
        index = self._bucket_of(active_at)
        if index < buckets.start:
            self.before_history += 1
            return
        index = min(index, buckets.stop - 1)  # a clock ahead of ours: the last bucket
        self.written[index] = self.written.get(index, 0) + 1
        if kind in LEGACY_KINDS:
            self.legacy_written[index] = self.legacy_written.get(index, 0) + 1

    def series(self) -> list[Series]:
        """Legacy documents written per bucket (alarm above 0), and the documents by time
        of their last write, cumulative (alarm above max_docs)."""
        width = "hour" if self.bucket == HOUR else "day"
        starts = [
            (i, dt.datetime.fromtimestamp(i * self.bucket.total_seconds(), dt.timezone.utc))
            for i in self.buckets
        ]
        legacy = [Point(start, self.legacy_written.get(i, 0)) for i, start in starts]
        level, running = [], self.before_history
        for i, start in starts:
            running += self.written.get(i, 0)
            level.append(Point(start, running))
        return [
            Series(
                "legacy_written",
                f"legacy documents written per {width} (by last_heartbeat, else the update time)",
                self.bucket,
                legacy,
                threshold=0,
                threshold_label="alarm above 0: any legacy document",
                unit="legacy documents",
            ),
            Series(
                "documents",
                "documents by time of their last write, cumulative: how the "
                "collection grew (documents deleted since are not counted)",
                self.bucket,
                level,
                threshold=self.max_docs,
                style="line",
                unit="documents",
                threshold_label=f"alarm above {self.max_docs} (--max-docs)",
            ),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "checked_at": rfc3339(self.checked_at, "auto"),
            "window_seconds": int(self.window.total_seconds()),
            "max_docs": self.max_docs,
            "total": self.total,
            "by_kind": dict(self.by_kind),
            "legacy": self.legacy,
            "updated_in_window": self.updated_in_window,
            "growth_per_day": self.growth_per_day,
            "legacy_in_window": sorted(self.legacy_in_window),
            "unknown_ids": sorted(self.unknown_ids),
            "healthy": self.healthy,
            "reasons": self.reasons,
        }


def activity_time(last_heartbeat: object, update_time: dt.datetime) -> dt.datetime:
    return last_heartbeat if isinstance(last_heartbeat, dt.datetime) else update_time


def assess(
    docs: Iterable[tuple[str, dt.datetime]],
    *,
    now: dt.datetime,
    window: dt.timedelta,
    max_docs: int,
    collection: str = COLLECTION,
    classifier: Classifier = _default,
    history: Optional[dt.timedelta] = None,
) -> Health:
    """Health of a collection from (doc id, activity time) pairs."""
    health = Health(
        collection, now, window, max_docs, history=history or parse_window(DEFAULT_HISTORY)
    )
    for doc_id, active_at in docs:
        health.add(doc_id, classifier.classify(doc_id).kind, active_at)
    return health


# ---- the plugin ----------------------------------------------------------------------------


@checks.options(
    Option(
        "max_docs",
        int,
        DEFAULT_MAX_DOCS,
        "Alarm when the collection holds more documents than this.",
        minimum=0,
    ),
    Option(
        "window",
        str,
        DEFAULT_WINDOW,
        "Recent-activity window: 90s, 30m, 1h, 7d.",
        parse=parse_window,
    ),
    Option("collection", str, COLLECTION, "The heartbeat collection to read."),
    Option(
        "history",
        str,
        DEFAULT_HISTORY,
        "What the charts of --format html cover (at "
        "least the window): per hour up to 7d, per day beyond.",
        parse=parse_window,
    ),
)
def heartbeats(
    store: Any,
    *,
    max_docs: int = DEFAULT_MAX_DOCS,
    window: Union[dt.timedelta, str] = DEFAULT_WINDOW,
    collection: str = COLLECTION,
    history: Union[dt.timedelta, str] = DEFAULT_HISTORY,
) -> CheckResult:
    """Count heartbeat documents by ID kind and flag growth and legacy writers.

    Reports the total (alarm above --max-docs), counts per ID kind, documents with a
    heartbeat within the window, the growth per day that implies (non-canonical documents
    active in the window, scaled to a day), and the legacy documents written within the
    window (a sign an old image is still running). Exit 0
    when healthy; 1 when over the threshold or any legacy document exists, with the
    reason in one line on stderr. The JSON form is documented in the README. --format
    html is a page with charts: documents by kind, legacy documents written per hour (or
    day) over --history, and the collection's growth against --max-docs.

    Examples:

        fsmigrate --project my-proj check heartbeats --max-docs 50 --window 1h

        fsmigrate --project my-proj check heartbeats --format html -o health.html
    """
    span = parse_window(window) if isinstance(window, str) else window
    charted = parse_window(history) if isinstance(history, str) else history
    now = dt.datetime.now(dt.timezone.utc)
    docs = (
        (d.id, activity_time(d.get("last_heartbeat"), d.update_time))
        for d in store.scan(collection)
    )
    health = assess(
        docs, now=now, window=span, max_docs=max_docs, collection=collection, history=charted
    )
    return result(health)


def result(health: Health) -> CheckResult:
    """The plugin's answer for a computed `Health`."""
    details = health.to_json()
    return CheckResult(
        check="heartbeats",
        healthy=health.healthy,
        reasons=list(health.reasons),
        metrics=metrics(health),
        labels={"collection": health.collection},
        details=details,
        lines=list(text_lines(details)),
        checked_at=health.checked_at,
        series=health.series(),
    )


def metrics(health: Health) -> list[Metric]:
    """The gauges of `--format openmetrics` (prefixed `fsmigrate_check_heartbeats_`)."""
    window = format_window(health.window)
    out = [Metric("documents", health.total, help="documents in the collection")]
    out += [
        Metric(
            "documents_by_kind",
            health.by_kind[kind],
            {"kind": kind},
            help="documents per ID kind (canonical_processor, canonical_phase2, "
            "legacy_run, legacy_date, unknown)",
        )
        for kind in KINDS
    ]
    out += [
        Metric(
            "legacy_documents",
            health.legacy,
            help="legacy-format documents (legacy_run + legacy_date); healthy is 0",
        ),
        Metric(
            "unknown_documents",
            len(health.unknown_ids),
            help="documents whose ID is neither canonical nor legacy (never deleted)",
        ),
        Metric(
            "documents_updated_in_window",
            health.updated_in_window,
            help=f"documents active within the window ({window})",
        ),
        Metric(
            "growth_per_day",
            health.growth_per_day,
            help="non-canonical documents active within the window, scaled to a day",
        ),
        Metric(
            "legacy_documents_in_window",
            len(health.legacy_in_window),
            help="legacy documents written within the window: an old image still runs",
        ),
        Metric("max_docs", health.max_docs, help="the alarm threshold (--max-docs)"),
        Metric(
            "window_seconds",
            int(health.window.total_seconds()),
            help="the recent-activity window (--window)",
        ),
    ]
    return out


def text_lines(health: dict[str, Any]) -> Iterator[str]:
    """The text report's body (from `Health.to_json()`); the renderer adds the verdict
    line above and the reasons below."""
    window = format_window(dt.timedelta(seconds=health["window_seconds"]))
    yield f"{'total':<24}{health['total']:>7}  (alarm above {health['max_docs']})"
    for kind, label in KIND_LABELS.items():
        yield f"{label:<24}{health['by_kind'][kind]:>7}"
    yield (
        f"{'updated in last ' + window:<24}{health['updated_in_window']:>7}"
        f"  (growth {health['growth_per_day']:g} documents/day)"
    )
    recent = health["legacy_in_window"]
    yield f"{'legacy written in ' + window:<24}{len(recent):>7}"
    for doc_id in recent[:TEXT_SAMPLE]:
        yield f"  {doc_id}"
    if len(recent) > TEXT_SAMPLE:
        yield f"  ... and {len(recent) - TEXT_SAMPLE} more (--format json lists all)"
    for doc_id in health["unknown_ids"][:TEXT_SAMPLE]:
        yield f"unknown ID: {doc_id}"


__all__ = ["Health", "activity_time", "assess", "heartbeats", "metrics", "result", "text_lines"]
