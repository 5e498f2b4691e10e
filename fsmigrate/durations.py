"""Durations on the command line: '90s', '30m', '1h', '7d' (windows, --since)."""
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
