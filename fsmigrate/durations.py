"""Durations for check plugins ('90s', '30m', '1h', '7d'): the path the README documented
before `fsmigrate.times`, kept so that plugins written against it go on working."""

from __future__ import annotations

from fsmigrate.times import MAX_WINDOW, format_window, parse_window

__all__ = ["MAX_WINDOW", "format_window", "parse_window"]
