"""A check's result as people and machines read it: text, JSON, OpenMetrics (for a
scraper) and a standalone HTML page (`check_page`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

from fsmigrate.checks import CheckResult, Metric
from fsmigrate.report.check_page import page
from fsmigrate.times import rfc3339


def text_chunks(result: CheckResult) -> Iterator[str]:
    verdict = "HEALTHY" if result.healthy else "UNHEALTHY"
    where = result.labels.get("collection", result.check)
    yield f"{where}: {verdict} (checked {rfc3339(result.checked_at, 'auto')})\n"
    for line in result.lines:
        yield f"  {line}\n"
    for reason in result.reasons:
        yield f"  reason: {reason}\n"


def json_chunks(result: CheckResult) -> Iterator[str]:
    yield json.dumps(result.to_json(), sort_keys=True, ensure_ascii=False, default=str) + "\n"


_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if isinstance(value, float) else str(int(value))


def openmetrics_chunks(result: CheckResult) -> Iterator[str]:
    """OpenMetrics text: one gauge family per metric name, prefixed `fsmigrate_check_`
    plus the check's name, the result's labels on every sample, `..._healthy` 0/1 and
    `..._checked_timestamp_seconds`, then `# EOF` (for a node-exporter textfile collector
    or a scrape)."""
    prefix = "fsmigrate_check_" + _METRIC_NAME.sub("_", result.check)
    families: dict[str, list[Metric]] = {}
    built_in = [
        Metric("healthy", int(result.healthy), help="1 when the check passed, else 0"),
        Metric(
            "checked_timestamp_seconds",
            result.checked_at.timestamp(),
            help="when the check ran (Unix time)",
        ),
    ]
    for metric in [*built_in, *result.metrics]:
        families.setdefault(_METRIC_NAME.sub("_", metric.name), []).append(metric)
    for name, samples in families.items():
        full = f"{prefix}_{name}"
        yield f"# TYPE {full} gauge\n"
        helps = [m.help for m in samples if m.help]
        if helps:
            yield f"# HELP {full} {_escape(helps[0])}\n"
        for metric in samples:
            labels = {**result.labels, **metric.labels}
            text = ",".join(
                f'{_METRIC_NAME.sub("_", k)}="{_escape(v)}"' for k, v in sorted(labels.items())
            )
            yield (
                f"{full}{{{text}}} {_number(metric.value)}\n"
                if text
                else f"{full} {_number(metric.value)}\n"
            )
    yield "# EOF\n"


def html_chunks(result: CheckResult) -> Iterator[str]:
    """A standalone page: the verdict, the reasons, a bar chart per labelled metric family,
    a chart per time series, the text report and the details (fsmigrate.report.check_page)."""
    return page(result)


RENDERERS = {
    "text": text_chunks,
    "json": json_chunks,
    "openmetrics": openmetrics_chunks,
    "html": html_chunks,
}
