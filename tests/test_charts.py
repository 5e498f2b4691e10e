"""Chart layouts (fsmigrate.report.charts, pure) and the check page built from a CheckResult."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pytest

from fsmigrate.checks import CheckResult, Metric, Point, Series
from fsmigrate.report import charts
from fsmigrate.report.checks import RENDERERS


def test_nice_scale_covers_the_value_with_whole_ticks() -> None:
    assert charts.nice_scale(0) == (5, [0, 1, 2, 3, 4, 5])
    assert charts.nice_scale(7)[0] == 10 and charts.nice_scale(37)[0] == 50
    top, ticks = charts.nice_scale(1035)
    assert top == 2000 and ticks == [0, 500, 1000, 1500, 2000]
    for value in (0.3, 5, 9.9, 11, 250, 777, 123456):
        top, ticks = charts.nice_scale(value)
        assert top >= value and ticks[0] == 0 and ticks[-1] == top


def test_horizontal_bars_stack_segments_in_proportion_and_count_what_is_left_out() -> None:
    rows = [(f"id_{i}", {"committed": 10 * i, "skipped": i}) for i in range(1, 6)]
    chart = charts.horizontal_bars(
        "c", "t", rows, [("committed", "committed"), ("skipped", "skipped")], limit=3
    )
    assert [b.label for b in chart.bars] == ["id_1", "id_2", "id_3"]
    assert (chart.omitted, chart.omitted_value) == (2, 44 + 55)
    third = chart.bars[2]
    committed, skipped = third.segments
    assert (committed.value, skipped.value, third.value) == (30, 3, 33)
    assert committed.width == pytest.approx(10 * skipped.width)
    assert skipped.x == pytest.approx(committed.x + committed.width)
    assert third.segments[0].x == chart.plot_x
    assert chart.bars[0].segments[0].width == pytest.approx(committed.width / 3)
    assert "id_3: 33 (30 committed, 3 skipped)" == third.title
    long = charts.horizontal_bars("c", "t", [("x" * 100, {"v": 1})], [("v", "v")])
    assert len(long.bars[0].label) == charts.MAX_LABEL_CHARS and long.bars[0].title.startswith(
        "x" * 100
    )


def test_time_chart_has_a_column_per_bucket_and_the_threshold_inside_the_plot() -> None:
    start = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    points = [(start + dt.timedelta(hours=i), float(i % 5)) for i in range(48)]
    chart = charts.time_chart(
        "s", "t", points, dt.timedelta(hours=1), threshold=10, threshold_label="alarm"
    )
    assert len(chart.columns) == 48 and len(chart.polyline.split()) == 48
    bottom = chart.plot_y + chart.plot_height
    assert chart.plot_y <= chart.threshold_y < bottom  # above every column: scale fits it
    assert all(c.y >= chart.threshold_y for c in chart.columns)
    tallest = max(chart.columns, key=lambda c: c.value)
    assert tallest.y + tallest.height == pytest.approx(bottom) and tallest.value == 4
    assert 2 <= len(chart.x_ticks) <= charts.MAX_X_TICKS
    assert chart.x_ticks[0].label == "03-01 00:00"
    with pytest.raises(ValueError, match="style"):
        charts.time_chart("s", "t", points, dt.timedelta(hours=1), style="pie")


class _Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, int]] = {}
        self.current = ""
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "svg":
            self.current = found["data-chart"]
            self.charts[self.current] = {}
        elif self.current:
            key = f"{tag}.{found.get('class', '')}"
            self.charts[self.current][key] = self.charts[self.current].get(key, 0) + 1


def test_any_check_gets_a_page_with_its_labelled_metrics_and_series_drawn() -> None:
    start = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    result = CheckResult(
        check="sessions",
        healthy=False,
        reasons=["3 expired <b>sessions</b>"],
        labels={"collection": "sessions"},
        metrics=[
            Metric("documents", 9),
            *(
                Metric("documents_by_state", n, {"state": s})
                for s, n in (("live", 6), ("expired", 3))
            ),
        ],
        details={"expired_ids": ["s_1", "s_2"], "total": 9},
        series=[
            Series(
                "expired",
                "expired per day",
                dt.timedelta(days=1),
                [Point(start + dt.timedelta(days=i), i) for i in range(4)],
                threshold=2,
                threshold_label="alarm above 2",
            )
        ],
    )
    page = "".join(RENDERERS["html"](result))
    svg = _Svg()
    svg.feed(page)
    assert set(svg.charts) == {"metric-documents_by_state", "series-expired"}
    assert svg.charts["metric-documents_by_state"]["g.bar"] == 2
    assert svg.charts["series-expired"]["rect.bar"] == 4
    assert svg.charts["series-expired"]["line.threshold"] == 1
    assert "script" not in svg.tags and "&lt;b&gt;sessions&lt;/b&gt;" in page
    assert "<code>s_1</code>" in page and "UNHEALTHY" in page


def test_a_chart_draws_up_to_its_limit_and_says_how_many_it_left_out() -> None:
    result = CheckResult(
        check="c",
        healthy=True,
        metrics=[Metric("docs_by_shard", 1000 + i, {"shard": f"s{i}"}) for i in range(45)],
    )
    page = "".join(RENDERERS["html"](result))
    svg = _Svg()
    svg.feed(page)
    assert svg.charts["metric-docs_by_shard"]["g.bar"] == 40
    assert "5 more not drawn (5,210 in all)" in page  # 1040 + ... + 1044
