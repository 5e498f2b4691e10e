"""Health checks as plugins: found through the entry-point group `fsmigrate.checks`.

A check is a function `fn(store, **options) -> CheckResult`: it reads the target through
the store (`store.scan(collection)` streams documents) and returns a verdict, reasons and
metrics. Its options are declared with `@options(Option(...), ...)` so that the command
line can offer them (`fsmigrate check NAME --help`); the first line of its docstring is
its summary (`fsmigrate check --list`). Register it in the distribution's metadata:

    [project.entry-points."fsmigrate.checks"]
    sessions = "mypkg.checks:sessions"

A check may also return time series (`Series`: a value per hour or day, and the alarm
threshold), drawn by the html renderer and listed by the json one.

Nothing here prints; `fsmigrate.report.checks` turns a result into text, JSON, OpenMetrics
or an HTML page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Optional

from fsmigrate.errors import CheckBroken, CheckNotFound, UsageError
from fsmigrate.times import rfc3339

GROUP = "fsmigrate.checks"


@dataclass(frozen=True)
class Option:
    """One option of a check: `--max-docs` for `name="max_docs"`. `type` is int, float,
    str or bool (a flag); `parse` turns the command line's text into the value (for
    example a duration) and raises ValueError with a message when it cannot."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    parse: Optional[Callable[[str], Any]] = None
    minimum: Optional[float] = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def options(*declared: Option) -> Callable[[Callable], Callable]:
    """Declare a check's options (decorator)."""

    def attach(fn: Callable) -> Callable:
        fn.fsmigrate_options = tuple(declared)  # type: ignore[attr-defined]
        return fn

    return attach


@dataclass(frozen=True)
class Metric:
    """A gauge: `name` (snake case, without prefix), its value, labels, help text."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    help: str = ""


@dataclass(frozen=True)
class Point:
    """One bucket of a time series: its start (UTC) and its value."""

    start: dt.datetime
    value: float


@dataclass(frozen=True)
class Series:
    """A time series: one `Point` per bucket of `bucket` width, oldest first. `threshold`
    is the value the check alarms above (drawn as a line, with `threshold_label`);
    `style` is "bars" (a count per bucket) or "line" (a level over time)."""

    name: str
    title: str
    bucket: dt.timedelta
    points: Sequence[Point]
    threshold: Optional[float] = None
    threshold_label: str = ""
    style: str = "bars"
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "bucket_seconds": int(self.bucket.total_seconds()),
            "style": self.style,
            "unit": self.unit,
            "threshold": self.threshold,
            "threshold_label": self.threshold_label,
            "points": [{"start": rfc3339(p.start, "auto"), "value": p.value} for p in self.points],
        }


@dataclass
class CheckResult:
    """What a check found. `details` is the check's own JSON (documented by the check);
    `lines` its text report; `labels` apply to every metric (e.g. the collection);
    `series` its time series, if any (--format html draws them; json lists them under
    "series").

    Attributes:
        check: The check's name, the prefix of its metrics.
        healthy: Whether the collection is healthy.
        reasons: Why not, one line each.
        metrics: Its gauges.
        labels: Labels of every metric.
        details: Its JSON object.
        lines: Its text report.
        checked_at: When it ran.
        series: Its time series.
    """

    check: str
    healthy: bool
    reasons: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    series: list[Series] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {
            **self.details,
            "check": self.check,
            "healthy": self.healthy,
            "reasons": list(self.reasons),
        }
        if self.series:
            out["series"] = [s.to_json() for s in self.series]
        return out


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first on sys.path wins, like imports
    return found


@dataclass(frozen=True)
class CheckInfo:
    name: str
    summary: str
    options: tuple[Option, ...]
    fn: Callable[..., CheckResult]


def available() -> list[str]:
    return sorted(_entry_points())


def load(name: str) -> CheckInfo:
    eps = _entry_points()
    if name not in eps:
        raise CheckNotFound(name, sorted(eps))
    try:
        fn = eps[name].load()
    except Exception as exc:  # a plugin's import error must not look like ours
        raise CheckBroken(name, f"{type(exc).__name__}: {exc}") from exc
    if not callable(fn):
        raise CheckBroken(name, f"{eps[name].value} is not a function")
    doc = (fn.__doc__ or "").strip()
    summary = doc.splitlines()[0].strip() if doc else "(no description)"
    return CheckInfo(name, summary, tuple(getattr(fn, "fsmigrate_options", ())), fn)


def catalogue() -> list[tuple[str, str]]:
    """(name, summary) of every installed check; a plugin that cannot be loaded is listed
    with why, so one broken plugin does not hide the others."""
    out = []
    for name in available():
        try:
            out.append((name, load(name).summary))
        except CheckBroken as exc:
            out.append((name, f"(broken: {exc})"))
    return out


def resolve_options(info: CheckInfo, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, text parsed and checked; unknown options refused."""
    known = {o.name: o for o in info.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(
            f"check {info.name} has no option {', '.join(unknown)} (it has: "
            f"{', '.join(known) or 'none'})"
        )
    out = {}
    for name, opt in known.items():
        value = given.get(name, opt.default)
        if isinstance(value, str) and opt.parse is not None:
            try:
                value = opt.parse(value)
            except ValueError as exc:
                raise UsageError(f"{opt.flag}: {exc}") from exc
        if opt.minimum is not None and isinstance(value, (int, float)) and value < opt.minimum:
            raise UsageError(f"{opt.flag} must be at least {opt.minimum:g}, got {value}")
        out[name] = value
    return out


def run(store: Callable[[], Any], name: str, given: Mapping[str, Any]) -> CheckResult:
    """Load check `name`, resolve its options (refusing bad ones before anything connects),
    then run it on the store `store()` makes."""
    info = load(name)
    resolved = resolve_options(info, given)
    result = info.fn(store(), **resolved)
    if not isinstance(result, CheckResult):
        raise CheckBroken(name, f"it returned {type(result).__name__}, not a CheckResult")
    return result


# ---- rendering -------------------------------------------------------------------------------
