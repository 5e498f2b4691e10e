"""`fsmigrate check NAME --format html`: a check's result as a standalone page (the
verdict, the reasons, charts, the text report, the details), for any check plugin.

Charts: every metric family with one sample per value of one label (heartbeats:
`documents_by_kind{kind=...}`) is drawn as bars, and every time series the check returns
(`CheckResult.series`) as columns or a line, with its threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Union

from fsmigrate.checks import CheckResult, Metric
from fsmigrate.report import charts, pages
from fsmigrate.times import rfc3339

LIST_LIMIT = 1000  # IDs shown per list in the details (--format json lists all)
SHOWN_ABOVE = ("check", "healthy", "reasons")  # the verdict and reasons head the page


def metric_charts(metrics: list[Metric]) -> list[charts.BarChart]:
    """A bar chart per family whose samples differ in exactly one label."""
    families: dict[str, list[Metric]] = {}
    for metric in metrics:
        families.setdefault(metric.name, []).append(metric)
    out = []
    for name, samples in families.items():
        keys = {k for m in samples for k in m.labels}
        varying = [
            k for k in sorted(keys) if len({m.labels.get(k) for m in samples}) == len(samples)
        ]
        if (
            len(samples) < 2
            or len(varying) != 1
            or any(varying[0] not in m.labels for m in samples)
        ):
            continue
        key = varying[0]
        words = name.replace("_", " ")
        title = words if name.endswith("_by_" + key) else f"{words} by {key}"
        rows = [(m.labels[key], {"value": float(m.value)}) for m in samples]
        out.append(charts.horizontal_bars(f"metric-{name}", title, rows, [("value", key)]))
    return out


def series_charts(result: CheckResult) -> list[charts.TimeChart]:
    return [
        charts.time_chart(
            f"series-{s.name}",
            s.title,
            [(p.start, p.value) for p in s.points],
            s.bucket,
            style=s.style,
            threshold=s.threshold,
            threshold_label=s.threshold_label,
            unit=s.unit,
        )
        for s in result.series
    ]


def _details(
    details: dict[str, Any],
) -> tuple[list[tuple[str, str]], list[tuple[str, list[str], int]]]:
    """(key, value) rows for scalars and maps; (key, first items, all) for lists."""
    rows: list[tuple[str, str]] = []
    lists: list[tuple[str, list[str], int]] = []
    for key, value in details.items():
        if key in SHOWN_ABOVE:
            continue
        if isinstance(value, (list, tuple)):
            lists.append((key, [str(v) for v in value[:LIST_LIMIT]], len(value)))
        elif isinstance(value, dict):
            rows.append((key, ", ".join(f"{k}: {v}" for k, v in value.items())))
        else:
            rows.append((key, _scalar(value)))
    return rows, lists


def _scalar(value: Union[str, int, float, bool, None]) -> str:
    return "" if value is None else str(value)


def page(result: CheckResult) -> Iterator[str]:
    rows, lists = _details(result.details)
    return pages.render(
        "check.html.j2",
        result=result,
        where=result.labels.get("collection", result.check),
        checked_at=rfc3339(result.checked_at, "auto"),
        charts=[*metric_charts(result.metrics), *series_charts(result)],
        rows=rows,
        lists=lists,
        list_limit=LIST_LIMIT,
    )
