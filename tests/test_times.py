"""fsmigrate.times: the '90s' / '30m' / '1h' / '7d' windows of --window and --since."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsmigrate.times import MAX_WINDOW, format_window, parse_window

HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "text, want",
    [
        ("90s", dt.timedelta(seconds=90)),
        ("30m", dt.timedelta(minutes=30)),
        ("1h", HOUR),
        ("7d", dt.timedelta(days=7)),
        (" 1h", HOUR),
        ("1h\n", HOUR),
        ("01h", HOUR),
    ],
)
def test_parse_window_ok(text, want):
    assert parse_window(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "0h",
        "00m",
        "1x",
        "h",
        "-1h",
        "+1h",
        "1.5h",
        "1 h",
        "1H",
        "1y",
        "１h",
        "١h",
        "1h1m",
        None,
        3600,
        "3651d",
        "87601h",
        "1000000000d",
        "99999999999999999999s",
    ],
)  # too large: not
def test_parse_window_rejects(text):  # OverflowError, the CLI must show a usage error
    with pytest.raises(ValueError):
        parse_window(text)


@settings(max_examples=300)
@given(
    st.sampled_from([1, 60, 3600, 86400]).flatmap(
        lambda u: st.integers(1, MAX_WINDOW // dt.timedelta(seconds=u)).map(lambda n: n * u)
    )
)
def test_format_window_round_trip(seconds):
    window = dt.timedelta(seconds=seconds)
    text = format_window(window)
    assert parse_window(text) == window
    assert text == format_window(parse_window(text))
