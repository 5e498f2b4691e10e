"""Operations and preconditions (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

import pytest

from fsmigrate.scripts.operations import (
    MUST_NOT_EXIST,
    Operation,
    Precondition,
    check_operation,
    check_path,
    same_time,
)
from fsmigrate.times import rfc3339

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


@dataclass
class Snap:
    path: str
    update_time: Optional[dt.datetime]

    def document_bytes(self) -> bytes:
        return b""


def test_update_time_precondition() -> None:
    pre = Precondition(update_time=T0)
    assert pre.holds_for(Snap("c/d", T0))
    assert not pre.holds_for(Snap("c/d", T0 + dt.timedelta(microseconds=1)))
    assert not pre.holds_for(None)
    assert pre.why_not(None) == "vanished since plan"
    assert pre.why_not(Snap("c/d", T0 + dt.timedelta(seconds=1))) == "changed since plan"
    assert pre.to_json() == '{"update_time": "2026-01-02T03:04:05.123456Z"}'


def test_must_not_exist() -> None:
    assert MUST_NOT_EXIST.holds_for(None)
    assert not MUST_NOT_EXIST.holds_for(Snap("c/d", T0))
    assert MUST_NOT_EXIST.why_not(Snap("c/d", T0)) == "already exists"


def test_same_time_ignores_timezone_representation() -> None:
    other_tz = T0.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert same_time(T0, other_tz)
    assert rfc3339(other_tz) == "2026-01-02T03:04:05.123456Z"


@pytest.mark.parametrize(
    "path,ok",
    [
        ("c/d", True),
        ("c/d/e/f", True),
        ("c", False),
        ("c/d/e", False),
        ("", False),
        ("c//d", False),
        ("c/__x__", False),
        ("c/..", False),
    ],
)
def test_check_path(path: str, ok: bool) -> None:
    assert (check_path(path) is None) == ok


def test_check_operation() -> None:
    assert check_operation(Operation("delete", "c/d")) is None
    assert "not an operation" in check_operation({"kind": "delete"})
    assert "unknown operation kind" in check_operation(Operation("drop", "c/d"))
    assert "needs a mapping" in check_operation(Operation("set", "c/d", None))
    assert "has no fields" in check_operation(Operation("update", "c/d", {}))
    assert "collection path" in check_operation(Operation("delete", "c"))
