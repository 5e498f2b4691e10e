"""Traffic control, pure: the ramp schedule, the token bucket and adaptive throttling, with
a fake clock (no Firestore, no real sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fsmigrate.engine import estimate
from fsmigrate.engine.traffic import (
    MIN_RATE,
    Limiter,
    Limits,
    Schedule,
    Ticket,
    describe_stats,
    resolve,
)
from fsmigrate.errors import UsageError

MINUTE = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def limiter(limits: Limits) -> tuple[Limiter, FakeClock]:
    clock = FakeClock()
    return Limiter(limits, clock=clock, sleep=clock.sleep), clock


def drive(
    lim: Limiter, clock: FakeClock, seconds: float, batch: int = 100
) -> list[tuple[float, int, float]]:
    """Commit `batch` operations at a time, each accepted, for `seconds`; returns
    (when it asked, operations, the limit in force then) of each commit."""
    out = []
    end = clock.now + seconds
    while clock.now < end:
        asked, limit = clock.now, lim.current()
        ticket = lim.acquire(batch)
        out.append((asked, batch, limit))
        lim.done(ticket)
    return out


def test_the_schedule_is_500_750_1125_per_5_minutes() -> None:
    ramp = Schedule()
    assert [ramp.rate_at(m * MINUTE) for m in (0, 4.99, 5, 9.99, 10, 15, 20)] == [
        500,
        500,
        750,
        750,
        1125,
        1687.5,
        2531.25,
    ]
    custom = Schedule.parse("200/100/1")
    assert (custom.start, custom.factor, custom.period) == (200, 2.0, 60)
    assert [custom.rate_at(s) for s in (0, 60, 120)] == [200, 400, 800]


def test_the_limiter_follows_the_ramp_when_its_traffic_keeps_up() -> None:
    lim, clock = limiter(Limits(ramp=Schedule(), adaptive=True))
    t0 = clock.now
    commits = drive(lim, clock, 20 * MINUTE)
    for period, expected in enumerate([500, 750, 1125, 1687.5]):
        start, end = t0 + period * 300, t0 + (period + 1) * 300
        inside = [(n, limit) for t, n, limit in commits if start <= t < end]
        assert {limit for _, limit in inside} == {expected}
        # what went out in the period is the limit's worth, within one commit
        assert abs(sum(n for n, _ in inside) - expected * 300) <= 100
    # and the estimate of that schedule is what the limiter took
    ops = sum(n for _, n, _ in commits)
    assert Schedule().seconds_for(ops) == pytest.approx(20 * MINUTE, abs=0.2)


def test_the_ramp_does_not_grow_while_the_traffic_leaves_it_idle() -> None:
    lim, clock = limiter(Limits(ramp=Schedule(), adaptive=True))
    for _ in range(60):  # 100 operations every 10 s: far below half of 500/s
        lim.done(lim.acquire(100))
        clock.sleep(10)
    assert lim.current() == 500
    drive(lim, clock, 5 * MINUTE + 1)  # a period that uses it: then it grows
    assert lim.current() == 750


def test_max_rate_caps_the_ramp() -> None:
    lim, clock = limiter(Limits(max_rate=600, ramp=Schedule(), adaptive=True))
    commits = drive(lim, clock, 15 * MINUTE)
    assert [c[2] for c in commits[:3]] == [500, 500, 500]
    assert {c[2] for c in commits[-10:]} == {600}


@settings(max_examples=60, deadline=None)
@example([(25, 0.0)] * 120)  # back to back: the bound is tight
@example([(7, 0.0)] * 300)
@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.3])),
        min_size=5,
        max_size=300,
    )
)
def test_no_window_of_two_seconds_takes_more_than_the_cap_plus_one_commit(commits) -> None:
    lim, clock = limiter(Limits(max_rate=400))
    released = []
    for size, pause in commits:
        clock.sleep(pause)  # the caller's own work between commits
        lim.done(lim.acquire(size))
        released.append((clock.now, size))
    largest = max(size for size, _ in commits)
    for start, _ in released:
        in_window = sum(n for t, n in released if start <= t < start + 2.0)
        assert in_window <= 2.0 * 400 + largest


def test_a_throttling_answer_halves_the_limit_once_per_overload() -> None:
    lim, clock = limiter(Limits(max_rate=1000, adaptive=True))
    a, b = lim.acquire(100), lim.acquire(100)  # two commits in flight
    lim.done(a, "RESOURCE_EXHAUSTED")
    assert lim.current() == 500
    lim.done(b, "ABORTED")  # sent before that cut: the same overload, no second cut
    assert lim.current() == 500
    lim.done(lim.acquire(100), "DEADLINE_EXCEEDED")  # sent at 500/s and refused again
    assert lim.current() == 250
    lim.done(lim.acquire(100), "NOT_FOUND")  # not an overload
    lim.done(lim.acquire(100))
    assert lim.current() == 250
    report = lim.report()
    assert report["throttle_events"] == 3 and report["cuts"] == 2
    assert report["by_code"] == {"RESOURCE_EXHAUSTED": 1, "ABORTED": 1, "DEADLINE_EXCEEDED": 1}
    assert report["lowest_rate"] == 250 and report["max_rate"] == 1000
    for _ in range(20):
        lim.done(lim.acquire(10), "RESOURCE_EXHAUSTED")
    assert lim.current() == MIN_RATE  # never below the floor


def test_after_a_cut_the_rate_recovers_along_the_ramp_unless_still_overloaded() -> None:
    lim, clock = limiter(Limits(ramp=Schedule(), adaptive=True))
    drive(lim, clock, 60)
    lim.done(lim.acquire(100), "RESOURCE_EXHAUSTED")
    assert lim.current() == 250
    drive(lim, clock, 5 * MINUTE + 1)
    assert lim.current() == 375  # one period at the cut rate: +50%
    # many refusals within the last 2 minutes (answers to commits sent before the cut:
    # counted, no new cut): attempted > 1.25 x accepted, so no growth at the next step
    drive(lim, clock, 4 * MINUTE)
    lim.done(Ticket(ops=500_000, generation=-1), "ABORTED")
    assert lim.current() == 375
    drive(lim, clock, 1 * MINUTE + 1)
    assert lim.current() == 375
    drive(lim, clock, 5 * MINUTE)  # the refusals have aged out of the window
    assert lim.current() == 562.5


def test_an_unlimited_limiter_cuts_from_the_rate_it_measured() -> None:
    lim, clock = limiter(Limits(adaptive=True))  # a real project with --no-ramp
    assert lim.current() is None
    for _ in range(30):  # 300 operations a second
        lim.done(lim.acquire(100))
        clock.sleep(1 / 3)
    lim.done(lim.acquire(100), "RESOURCE_EXHAUSTED")
    assert lim.current() == pytest.approx(150, rel=0.1)


def test_waiting_is_wall_time_held_back() -> None:
    lim, clock = limiter(Limits(max_rate=400))
    lim.begin_run()
    start = clock.now
    for _ in range(4):
        lim.done(lim.acquire(400))
    assert clock.now - start == pytest.approx(3.0)  # the first goes at once
    assert lim.report()["waited_seconds"] == pytest.approx(3.0)
    assert "waited 3.0 s" in describe_stats(lim.report())


def test_resolve_defaults_and_options() -> None:
    env: dict[str, str] = {}
    emulator = resolve(emulator=True, environ=env)
    assert not emulator.active and emulator.seconds_for(1000) is None  # no limiter at all
    real = resolve(emulator=False, environ=env)
    assert real.ramp == Schedule() and real.adaptive and real.max_rate is None
    assert resolve(emulator=False, ramp=False, environ=env).ramp is None
    assert resolve(emulator=False, ramp=False, environ=env).adaptive
    assert resolve(emulator=True, ramp_start=100, environ=env).ramp == Schedule(start=100)
    assert resolve(emulator=True, max_rate=50, environ=env).seconds_for(1000) == 20
    custom = resolve(emulator=False, environ={"FSMIGRATE_RAMP": "1000/25/10"})
    assert custom.ramp == Schedule(1000, 1.25, 600)
    for bad in ("fast", "500/50", "0/50/5", "500/50/0", "nan/1/1"):
        with pytest.raises(UsageError, match="FSMIGRATE_RAMP|ramp"):
            resolve(emulator=False, environ={"FSMIGRATE_RAMP": bad})
    with pytest.raises(UsageError, match="--ramp-start"):
        resolve(emulator=False, ramp=False, ramp_start=100, environ=env)
    with pytest.raises(UsageError, match="--max-rate"):
        resolve(emulator=False, max_rate=0, environ=env)


def test_seconds_at_the_limits() -> None:
    assert Limits(max_rate=2000).seconds_for(20_000) == 10
    assert Schedule().seconds_for(150_000) == 300  # 5 minutes at 500/s
    assert Schedule().seconds_for(150_000 + 225_000) == 600  # then 5 at 750/s
    assert Schedule().seconds_for(150_000 + 60_000, cap=600) == 400
    total = estimate.total(
        [
            {"reads": 1, "writes": 2, "deletes": 100_000, "archive_bytes": 7},
            {"reads": 3, "writes": 0, "deletes": 50_000, "archive_bytes": 5},
        ],
        Limits(ramp=Schedule()),
    )
    assert total == {
        "reads": 4,
        "writes": 2,
        "deletes": 150_000,
        "archive_bytes": 12,
        "seconds_at_ramp": pytest.approx(300 + 2 / 750, abs=0.001),
    }
