"""Times as text, one way (RFC 3339, UTC, `Z`), and durations on the command line: '90s',
'30m', '1h', '7d' (windows, --since)."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from typing import Optional

from fsmigrate.errors import UsageError

_WINDOW_RE = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = dt.timedelta(days=3650)


def parse_window(text: str) -> dt.timedelta:
    """'90s', '30m', '1h', '7d' -> timedelta; ValueError otherwise."""
    match = _WINDOW_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or int(match[1]) == 0:
        raise ValueError(f"window {text!r} is not a positive duration like 30m, 1h or 7d")
    try:
        window = dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    except OverflowError:
        window = MAX_WINDOW * 2
    if window > MAX_WINDOW:
        raise ValueError(f"window {text!r} is longer than {MAX_WINDOW.days} days")
    return window


def parse_age(text: str) -> dt.timedelta:
    """Like `parse_window`, and '0d' (no age: now) is allowed."""
    match = _WINDOW_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match and int(match[1]) == 0:
        return dt.timedelta(0)
    return parse_window(text)


def parse_instant(text: str, now: dt.datetime) -> dt.datetime:
    """An age before `now` ('30m', '12h', '0d') or a date/time ('2026-01-31',
    '2026-01-31T10:00:00Z'; UTC when no zone); ValueError otherwise."""
    try:
        return now - parse_age(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(
            f"{text!r} is neither an age like 30m or 12h nor a time like 2026-01-31T10:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def format_window(window: dt.timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rfc3339(when: dt.datetime, timespec: str = "exact") -> str:
    """`when` in UTC as RFC 3339 text ending in `Z`. `timespec` "exact" keeps every digit
    the value has (nanoseconds of a Firestore timestamp when they are not whole
    microseconds, else six digits: the form the state file stores and compares); "auto",
    "seconds" and "microseconds" are `datetime.isoformat`'s."""
    nanos = getattr(when, "nanosecond", None)
    value = when.astimezone(dt.timezone.utc)
    if timespec != "exact":
        return value.isoformat(timespec=timespec).replace("+00:00", "Z")
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos is not None and nanos % 1000:
        return f"{base}.{nanos:09d}Z"
    return f"{base}.{value.microsecond:06d}Z"


def now_text() -> str:
    """This instant, as `rfc3339` writes it."""
    return rfc3339(dt.datetime.now(dt.timezone.utc))


def seconds_from_env(
    name: str, default: float, environ: Optional[Mapping[str, str]] = None
) -> float:
    """A positive number of seconds from the environment variable `name` (`default` when
    unset or empty); UsageError naming the variable otherwise."""
    text = (os.environ if environ is None else environ).get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise UsageError(f"{name}={text!r}: not a number of seconds") from exc
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{name}={text!r}: must be a positive number of seconds")
    return value
