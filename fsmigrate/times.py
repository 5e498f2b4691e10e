"""Times as text, one way (RFC 3339, UTC, `Z`), and durations on the command line: '90s',
'30m', '1h', '7d' (windows, --since)."""

from __future__ import annotations

import datetime as dt
import re

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
