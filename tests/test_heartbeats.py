"""fsmigrate.heartbeats: the processor_heartbeats ID classifier and its health check (pure).

Examples per ID kind, Hypothesis properties (robustness, fixed points, legacy round trips,
agreement with an independent regex-free reference), the health report, and the check
plugin's result (text, JSON, metrics)."""

from __future__ import annotations

import datetime as dt
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsmigrate.heartbeats import (
    CANONICAL_KINDS,
    CANONICAL_PHASE2,
    CANONICAL_PROCESSOR,
    KINDS,
    LEGACY_DATE,
    LEGACY_RUN,
    PHASE2_IDS,
    UNKNOWN,
    Classifier,
    classify,
)
from fsmigrate.heartbeats.check import activity_time, assess
from fsmigrate.times import MAX_WINDOW, format_window, parse_window

# ---- examples ---------------------------------------------------------------------------

PROCESSORS = [
    "PlayerGameSummaryProcessor",
    "AsyncUpcomingPlayerGameContextProcessor",
    "TeamDefenseGameSummaryProcessor",
    "PlayerCompositeFactorsProcessor",
    "Team2025Processor",
]
PHASE2 = [
    "p2_nba_raw.nbac_team_boxscore",
    "p2_nba_raw.bdl_live_boxscores",
    "p2_nba_raw.odds_api_game_lines",
    "p2_nba_raw.bettingpros_player_points_props",
    "p2_nbac_player_boxscores",
    "p2_nba_raw.x_2024_totals",
]


@pytest.mark.parametrize(
    "doc_id, kind",
    [(i, CANONICAL_PROCESSOR) for i in PROCESSORS] + [(i, CANONICAL_PHASE2) for i in PHASE2],
)
def test_canonical_examples(doc_id, kind):
    assert classify(doc_id)[:2] == (kind, doc_id)


@pytest.mark.parametrize(
    "doc_id, expected",
    [
        (
            "NbacTeamBoxscoreProcessor_None_097ffc9c",
            (
                LEGACY_RUN,
                "p2_nba_raw.nbac_team_boxscore",
                "NbacTeamBoxscoreProcessor",
                "097ffc9c",
                None,
            ),
        ),
        (
            "NbacPlayerBoxscoreProcessor_None_0a1b2c3d",
            (
                LEGACY_RUN,
                "p2_nbac_player_boxscores",
                "NbacPlayerBoxscoreProcessor",
                "0a1b2c3d",
                None,
            ),
        ),
        (
            "PlayerGameSummaryProcessor_None_deadbeef",
            (
                LEGACY_RUN,
                "PlayerGameSummaryProcessor",
                "PlayerGameSummaryProcessor",
                "deadbeef",
                None,
            ),
        ),
        (
            "OddsApiGameLinesProcessor_2024-02-29_097ffc9c",
            (
                LEGACY_DATE,
                "p2_nba_raw.odds_api_game_lines",
                "OddsApiGameLinesProcessor",
                "097ffc9c",
                "2024-02-29",
            ),
        ),
        (
            "Team2025Processor_2025-01-31_0a1b2c3d",
            (LEGACY_DATE, "Team2025Processor", "Team2025Processor", "0a1b2c3d", "2025-01-31"),
        ),
    ],
)
def test_legacy_examples(doc_id, expected):
    found = classify(doc_id)
    assert tuple(found) == expected and found.is_legacy


@pytest.mark.parametrize(
    "doc_id",
    [
        "Foo_None_",
        "FooProcessor_None_",
        "FooProcessor_None_xyz12345",
        "FooProcessor_None_097ffc9c9",
        "FooProcessor_None_097FFC9C",
        "FooProcessor_None_097ffc9",
        "FooProcessor_none_097ffc9c",
        "FooProcessor_2025-13-01_097ffc9c",
        "FooProcessor_2025-02-30_097ffc9c",
        "FooProcessor_0000-01-01_097ffc9c",
        "FooProcessor_202_097ffc9c",
        "FooProcessor_2025-1-01_097ffc9c",
        "FooProcessor_20250131_097ffc9c",
        "FooProcessor_2025-01-31",
        "Processor",
        "fooProcessor",
        "FooProcessor_",
        "_FooProcessor",
        "Foo",
        "p2_",
        "p2_nba_raw.",
        "p2_.x",
        "p2_a.b.c",
        "p2_NBA_raw.x",
        "P2_nba_raw.x",
        "",
        " ",
        "\t\n",
        " PlayerGameSummaryProcessor",
        "PlayerGameSummaryProcessor ",
        "PlayerGameSummaryProcessor\n",
        "p2_nba_raw.x\n",
        "FooProcessor_None_097ffc9c\n",
        "FooProcessor_2025-01-31_097ffc9c\n",
        "Foo_Processor",
        "FooéProcessor",
        "Foo٠Processor",
        "Foo Processor",
        "PlayerGameSummaryProcessör",
        "ＦooProcessor",
        "FooProcessor_None_٠٩٧ffc9c",
        "FooProcessor_None_０９７ffc9c",
        "FooProcessor_٢٠٢٥-01-31_097ffc9c",
        "FooProcessor_２０２５-01-31_097ffc9c",
        "p2_nba_raw.ｘ",
        "processor_heartbeats/FooProcessor",
        "Foo/Processor",
        "FooProcessor_None_097ffc9c/x",
        "p2_nba_raw/x",
    ],
)
def test_unknown_examples(doc_id):
    assert tuple(classify(doc_id)) == (UNKNOWN, None, None, None, None)


def test_huge_ids_do_not_blow_up():
    assert classify("A" * 100_000).kind == UNKNOWN
    assert classify("A" * 100_000 + "Processor").kind == CANONICAL_PROCESSOR
    assert classify("A" * 100_000 + "Processor_None_097ffc9c").kind == LEGACY_RUN


@pytest.mark.parametrize("value", [None, 123, 1.5, b"FooProcessor", ["FooProcessor"], object()])
def test_non_str_is_unknown(value):
    assert tuple(classify(value)) == (UNKNOWN, None, None, None, None)


def test_phase2_mapping_configurable():
    legacy = "NbacTeamBoxscoreProcessor_None_097ffc9c"
    assert classify(legacy).canonical_id == "p2_nba_raw.nbac_team_boxscore"
    empty = Classifier(phase2={})
    assert empty.classify(legacy)[:2] == (LEGACY_RUN, "NbacTeamBoxscoreProcessor")
    assert empty.classify("p2_nbac_player_boxscores").kind == UNKNOWN
    custom = Classifier(phase2={"FooProcessor": "p2_foo", "BarProcessor": "p2_ds.bar"})
    assert custom.classify("FooProcessor_2025-01-31_0a1b2c3d")[:2] == (LEGACY_DATE, "p2_foo")
    assert custom.classify("BarProcessor_None_0a1b2c3d")[:2] == (LEGACY_RUN, "p2_ds.bar")
    assert custom.classify("p2_foo")[:2] == (CANONICAL_PHASE2, "p2_foo")
    assert custom.classify(legacy).canonical_id == "NbacTeamBoxscoreProcessor"
    assert custom.classify("p2_nbac_player_boxscores").kind == UNKNOWN


@pytest.mark.parametrize(
    "mapping",
    [
        {"fooProcessor": "p2_x.y"},
        {"Foo": "p2_x.y"},
        {"Foo_Processor": "p2_x.y"},
        {"FooProcessor ": "p2_x.y"},
        {"FooProcessor": "nba_raw.x"},
        {"FooProcessor": ""},
        {"FooProcessor": "p2_"},
        {"FooProcessor": "p2_x.y\n"},
        {"FooProcessor": "p2_a.b.c"},
        {"FooProcessor": "p2_NBA.x"},
        {"FooProcessor": None},
        {"FooProcessor": 1},
        {1: "p2_x.y"},
    ],
)
def test_bad_phase2_mapping_raises_value_error(mapping):
    with pytest.raises(ValueError):  # never AttributeError/TypeError: non-str values too
        Classifier(phase2=mapping)


# ---- independent reference (string methods only, no regexes) ----------------------------

UPPER, HEX, DIGITS = set(string.ascii_uppercase), set("0123456789abcdef"), set(string.digits)
P2_CHARS = set(string.ascii_lowercase + string.digits + "_")


def ref_is_class(s: str) -> bool:
    return (
        len(s) > len("Processor")
        and s.endswith("Processor")
        and s[0] in UPPER
        and s.isascii()
        and s.isalnum()
    )


def ref_is_phase2(s: str) -> bool:
    parts = s[3:].split(".")
    return s.startswith("p2_") and len(parts) == 2 and all(p and set(p) <= P2_CHARS for p in parts)


def ref_is_date(s: str) -> bool:
    if len(s) != 10 or s[4] != "-" or s[7] != "-" or not set(s[:4] + s[5:7] + s[8:]) <= DIGITS:
        return False
    try:
        dt.date.fromisoformat(s)
    except ValueError:
        return False
    return True


def reference(doc_id, phase2=PHASE2_IDS) -> tuple:
    if not isinstance(doc_id, str):
        return (UNKNOWN, None, None, None, None)
    if ref_is_class(doc_id):
        return (CANONICAL_PROCESSOR, doc_id, doc_id, None, None)
    if ref_is_phase2(doc_id) or doc_id in phase2.values():
        return (CANONICAL_PHASE2, doc_id, None, None, None)
    parts = doc_id.split("_")
    if len(parts) == 3 and ref_is_class(parts[0]) and len(parts[2]) == 8 and set(parts[2]) <= HEX:
        name, middle, run = parts
        if middle == "None":
            return (LEGACY_RUN, phase2.get(name, name), name, run, None)
        if ref_is_date(middle):
            return (LEGACY_DATE, phase2.get(name, name), name, run, middle)
    return (UNKNOWN, None, None, None, None)


# ---- strategies ---------------------------------------------------------------------------

class_names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,30}", fullmatch=True).map("{}Processor".format)
phase2_ids = st.from_regex(r"p2_[a-z0-9_]+\.[a-z0-9_]+", fullmatch=True)
run_ids = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)
iso_dates = st.dates(min_value=dt.date(1000, 1, 1)).map(dt.date.isoformat)
any_text = st.text() | st.binary().map(lambda b: b.decode("latin-1"))
phase2_maps = st.dictionaries(
    class_names, phase2_ids | st.sampled_from(["p2_foo", "p2_x_y"]), max_size=4
)

date_shaped = st.from_regex(r"[0-9]{4}-(0[0-9]|1[0-3])-[0-3][0-9]", fullmatch=True)  # often no date
# a legacy ID's five parts: (valid strategy, near-miss strategy)
_PARTS = [
    (
        class_names,
        st.sampled_from(
            [
                "Processor",
                "fooProcessor",
                "FooProcesso",
                "Foo",
                "",
                "FooProcessör",
                "Foo_Processor",
                "ＦooProcessor",
                "p2_nba_raw",
                "Foo.Processor",
                "FooéProcessor",
                "Foo٠Processor",
            ]
        ),
    ),
    (st.just("_"), st.sampled_from(["", "-", "__", " ", ".", "\n", "/"])),
    (
        st.just("None") | iso_dates | date_shaped,
        st.sampled_from(
            [
                "none",
                "NONE",
                "",
                "None_",
                "2025-1-01",
                "2025-02-30",
                "0000-01-01",
                "2025-13-01",
                "2025-00-10",
                "20250131",
                "2025-01-31T00",
                "+2025-01-31",
                "٢٠٢٥-٠١-٣١",
                "nba_raw.x",
                "２０２５-01-31",
                "2025_01_31",
                "2025-01-3１",
                "12025-01-31",
            ]
        ),
    ),
    (st.just("_"), st.sampled_from(["", "-", "__", " ", ".", "\n", "/"])),
    (
        run_ids,
        st.from_regex(r"[0-9a-f]{6,10}", fullmatch=True)
        | st.text("0123456789abcdefABCDEFgx_.٠０", max_size=10),
    ),
]
_valid = (
    class_names
    | phase2_ids
    | st.sampled_from(sorted(PHASE2_IDS.values()))
    | st.builds("{}_None_{}".format, class_names, run_ids)
    | st.builds("{}_{}_{}".format, class_names, iso_dates, run_ids)
)
_noise = st.sampled_from(
    [
        *"_-. /\n\tPpNn0aAfgzZé٠０ｘ",
        "None",
        "Processor",
        "p2_",
        "_None_",
        "097ffc9c",
        "2025-02-30",
        "_2025-01-31_",
        "\r\n",
    ]
)
_edges = st.sampled_from(["", "", "", "\n", " ", "\x00"])  # anchoring bugs


@st.composite
def near_misses(draw) -> str:
    """A valid ID, a legacy ID with one part swapped for a near miss, or a bare (near-miss)
    class name; then 0-2 small edits and maybe a leading/trailing whitespace character."""
    mode = draw(st.sampled_from(["valid", "parts", "parts", "name"]))
    if mode == "valid":
        doc_id = draw(_valid)
    elif mode == "name":
        doc_id = draw(_PARTS[0][1])
    else:
        bad = draw(st.sampled_from([None, 0, 1, 2, 3, 4]))
        doc_id = "".join(draw(b if i == bad else g) for i, (g, b) in enumerate(_PARTS))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        op, i = draw(st.sampled_from("iadrc")), draw(st.integers(0, len(doc_id)))
        if op == "i":  # insert
            doc_id = doc_id[:i] + draw(_noise) + doc_id[i:]
        elif op == "a":  # append
            doc_id += draw(_noise)
        elif op == "d":  # delete one character
            doc_id = doc_id[:i] + doc_id[i + 1 :]
        elif op == "r":  # replace one character
            doc_id = doc_id[:i] + draw(_noise) + doc_id[i + 1 :]
        else:  # cut
            doc_id = doc_id[:i] if draw(st.booleans()) else doc_id[i:]
    return draw(_edges) + doc_id + draw(_edges)


# ---- properties ---------------------------------------------------------------------------


@settings(max_examples=500)
@given(any_text | near_misses())
def test_total_deterministic_and_consistent(doc_id):
    found = classify(doc_id)
    assert found.kind in KINDS
    assert (found.canonical_id is None) == (found.kind == UNKNOWN)
    assert classify(doc_id) == found == Classifier().classify(doc_id)
    if found.canonical_id is not None:  # idempotence
        again = classify(found.canonical_id)
        assert again.kind in CANONICAL_KINDS and again.canonical_id == found.canonical_id


@settings(max_examples=300)
@given(class_names | phase2_ids | st.sampled_from(sorted(PHASE2_IDS.values())), phase2_maps)
def test_canonical_ids_are_fixed_points(doc_id, mapping):
    if doc_id.startswith("p2_"):  # any configured phase 2 ID is canonical too
        mapping = {**mapping, "XProcessor": doc_id}
    for found in (classify(doc_id), Classifier(phase2=mapping).classify(doc_id)):
        assert found.kind in CANONICAL_KINDS and not found.is_legacy
        assert found.canonical_id == doc_id


@settings(max_examples=300)
@given(
    name=class_names,
    run=run_ids,
    date=iso_dates,
    mapping=phase2_maps,
    target=phase2_ids | st.just("p2_foo"),
    mapped=st.booleans(),
)
def test_legacy_ids_map_back(name, run, date, mapping, target, mapped):
    mapping = {k: v for k, v in mapping.items() if k != name}
    if mapped:
        mapping[name] = target
    classifier, want = Classifier(phase2=mapping), (target if mapped else name)
    run_found = classifier.classify(f"{name}_None_{run}")
    date_found = classifier.classify(f"{name}_{date}_{run}")
    assert tuple(run_found) == (LEGACY_RUN, want, name, run, None)
    assert tuple(date_found) == (LEGACY_DATE, want, name, run, date)
    want_kind = CANONICAL_PHASE2 if mapped else CANONICAL_PROCESSOR
    assert classifier.classify(want)[:2] == (want_kind, want)  # idempotent
    if name not in PHASE2_IDS:
        assert classify(f"{name}_None_{run}").canonical_id == name


@settings(max_examples=2500)
@given(any_text | near_misses())
def test_agrees_with_reference(doc_id):
    assert tuple(classify(doc_id)) == reference(doc_id)


@settings(max_examples=800)
@given(near_misses(), phase2_maps)
def test_agrees_with_reference_custom_mapping(doc_id, mapping):
    assert tuple(Classifier(phase2=mapping).classify(doc_id)) == reference(doc_id, mapping)


# ---- health -------------------------------------------------------------------------------

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
JSON_KEYS = {
    "collection",
    "checked_at",
    "window_seconds",
    "max_docs",
    "total",
    "by_kind",
    "legacy",
    "updated_in_window",
    "growth_per_day",
    "legacy_in_window",
    "unknown_ids",
    "healthy",
    "reasons",
}


def ago(**kw) -> dt.datetime:
    return NOW - dt.timedelta(**kw)


def test_check_unhealthy_report():
    docs = [
        ("PlayerGameSummaryProcessor", ago(minutes=5)),
        ("p2_nba_raw.nbac_team_boxscore", ago(days=2)),
        ("NbacTeamBoxscoreProcessor_None_097ffc9c", ago(minutes=10)),
        ("FooProcessor_2025-01-31_0a1b2c3d", ago(days=3)),
        ("weird/id", ago(minutes=1)),
        ("FooProcessor_None_0a1b2c3d", ago(minutes=60)),
    ]  # exactly at the window edge
    health = assess(docs, now=NOW, window=HOUR, max_docs=5)
    out = health.to_json()
    assert set(out) == JSON_KEYS
    assert json.loads(json.dumps(out)) == out
    assert out["collection"] == "processor_heartbeats"
    assert out["checked_at"] == "2025-03-01T12:00:00Z"
    assert out["window_seconds"] == 3600 and out["max_docs"] == 5 and out["total"] == 6
    assert out["by_kind"] == {
        CANONICAL_PROCESSOR: 1,
        CANONICAL_PHASE2: 1,
        LEGACY_RUN: 2,
        LEGACY_DATE: 1,
        UNKNOWN: 1,
    }
    assert out["legacy"] == 3 and out["updated_in_window"] == 4
    assert out["growth_per_day"] == 72.0  # 3 non-canonical docs in 1h; the canonical one not
    assert out["legacy_in_window"] == [
        "FooProcessor_None_0a1b2c3d",
        "NbacTeamBoxscoreProcessor_None_097ffc9c",
    ]
    assert out["unknown_ids"] == ["weird/id"]
    assert out["healthy"] is False and health.healthy is False
    reasons = out["reasons"]
    assert len(reasons) == 3
    assert "6 documents" in reasons[0] and "5 allowed" in reasons[0]
    assert "3 legacy" in reasons[1] and "2 legacy documents" in reasons[2] and "1h" in reasons[2]


def test_check_healthy_and_single_reasons():
    canon = [
        ("PlayerGameSummaryProcessor", ago(minutes=1)),
        ("p2_nbac_player_boxscores", ago(seconds=1)),
    ]
    health = assess(canon, now=NOW, window=HOUR, max_docs=2)
    assert health.healthy and health.reasons == [] and health.growth_per_day == 0.0
    assert health.to_json()["updated_in_window"] == 2
    assert not assess(canon, now=NOW, window=HOUR, max_docs=1).healthy
    old_legacy = assess(
        canon + [("FooProcessor_None_0a1b2c3d", ago(days=9))], now=NOW, window=HOUR, max_docs=50
    )
    assert len(old_legacy.reasons) == 1 and old_legacy.legacy_in_window == []
    week = dt.timedelta(days=7)  # unknown IDs are reported but do not make it unhealthy
    unknown = assess(canon + [("x", ago(minutes=1))], now=NOW, window=week, max_docs=3)
    assert unknown.healthy and unknown.unknown_ids == ["x"] and unknown.growth_per_day == 0.1
    empty = assess([], now=NOW, window=HOUR, max_docs=0)
    assert empty.healthy and empty.to_json()["total"] == 0
    custom = assess(
        canon, now=NOW, window=HOUR, max_docs=5, classifier=Classifier(phase2={}), collection="c"
    )  # the classifier and collection name are honoured
    assert custom.unknown_ids == ["p2_nbac_player_boxscores"] and custom.collection == "c"


def test_activity_time():
    beat, updated = ago(minutes=3), ago(days=1)
    assert activity_time(beat, updated) == beat
    for other in (None, "2025-03-01T12:00:00Z", 1740830400, dt.date(2025, 3, 1)):
        assert activity_time(other, updated) == updated


# ---- windows (fsmigrate.times: tests/test_times.py) ----------------------------


def test_largest_window_is_usable_by_check():
    window = parse_window(format_window(MAX_WINDOW))
    assert window == MAX_WINDOW == parse_window("3650d")
    health = assess(
        [("FooProcessor_None_0a1b2c3d", ago(days=3000))], now=NOW, window=window, max_docs=5
    )
    assert health.legacy_in_window == ["FooProcessor_None_0a1b2c3d"]


# ---- the check plugin (fsmigrate.heartbeats.check) -----------------------------------------

GOLDEN_DOCS = [
    ("PlayerGameSummaryProcessor", ago(minutes=5)),
    ("p2_nba_raw.nbac_team_boxscore", ago(days=2)),
    ("NbacTeamBoxscoreProcessor_None_097ffc9c", ago(minutes=10)),
    ("FooProcessor_2025-01-31_0a1b2c3d", ago(days=3)),
    ("weird/id", ago(minutes=1)),
    ("FooProcessor_None_0a1b2c3d", ago(minutes=60)),
] + [(f"BarProcessor_None_{i:08x}", ago(minutes=2)) for i in range(21)]

# What `check heartbeats` printed before it became a plugin (report.health_chunks).
GOLDEN_TEXT = (
    """\
processor_heartbeats: UNHEALTHY (checked 2025-03-01T12:00:00Z)
  total                        27  (alarm above 5)
  canonical processor           1
  canonical phase 2             1
  legacy run-suffixed          23
  legacy date-suffixed          1
  unknown                       1
  updated in last 1h           25  (growth 576 documents/day)
  legacy written in 1h         23
"""
    + "".join(f"    BarProcessor_None_{i:08x}\n" for i in range(20))
    + """\
    ... and 3 more (--format json lists all)
  unknown ID: weird/id
  reason: 27 documents in processor_heartbeats, more than the 5 allowed
  reason: 24 legacy-format documents (expected 0)
  reason: 23 legacy documents written in the last 1h: an old image is still running
"""
)


def test_plugin_text_and_json_are_the_reports_of_before():
    from fsmigrate.heartbeats.check import result
    from fsmigrate.report import checks

    health = assess(GOLDEN_DOCS, now=NOW, window=HOUR, max_docs=5)
    found = result(health)

    assert "".join(checks.text_chunks(found)) == GOLDEN_TEXT
    out = json.loads("".join(checks.json_chunks(found)))
    assert [s["name"] for s in out.pop("series")] == ["legacy_written", "documents"]
    assert out == {**health.to_json(), "check": "heartbeats"}
    assert set(found.details) == JSON_KEYS
    assert (found.healthy, found.reasons, found.labels) == (
        False,
        health.reasons,
        {"collection": "processor_heartbeats"},
    )


def test_plugin_metrics():
    from fsmigrate.heartbeats.check import result

    found = result(assess(GOLDEN_DOCS, now=NOW, window=HOUR, max_docs=5))
    plain = {m.name: m.value for m in found.metrics if not m.labels}
    assert plain == {
        "documents": 27,
        "legacy_documents": 24,
        "unknown_documents": 1,
        "documents_updated_in_window": 25,
        "growth_per_day": 576.0,
        "legacy_documents_in_window": 23,
        "max_docs": 5,
        "window_seconds": 3600,
    }
    by_kind = {m.labels["kind"]: m.value for m in found.metrics if m.labels}
    assert by_kind == {
        CANONICAL_PROCESSOR: 1,
        CANONICAL_PHASE2: 1,
        LEGACY_RUN: 23,
        LEGACY_DATE: 1,
        UNKNOWN: 1,
    }
    assert all(m.help for m in found.metrics)


class FakeDoc:
    def __init__(self, doc_id, beat, updated):
        self.id, self._beat, self.update_time = doc_id, beat, updated

    def get(self, field, default=None):
        return self._beat if field == "last_heartbeat" else default


class FakeStore:
    def __init__(self, docs):
        self.docs, self.scanned = docs, []

    def scan(self, collection):
        self.scanned.append(collection)
        return iter(self.docs)


def test_plugin_function_reads_the_store_with_its_declared_options():
    from fsmigrate import checks
    from fsmigrate.errors import UsageError
    from fsmigrate.heartbeats.check import heartbeats

    now = dt.datetime.now(dt.timezone.utc)
    store = FakeStore(
        [
            FakeDoc("PlayerGameSummaryProcessor", now, now),
            FakeDoc("FooProcessor_None_0a1b2c3d", None, now - 2 * HOUR),
        ]
    )
    declared = {o.name: o for o in heartbeats.fsmigrate_options}
    assert list(declared) == ["max_docs", "window", "collection", "history"]
    assert (declared["max_docs"].default, declared["max_docs"].minimum) == (50, 0)
    assert declared["collection"].default == "processor_heartbeats"
    assert declared["window"].default == "1h" and declared["window"].parse is parse_window

    info = checks.CheckInfo("heartbeats", "", heartbeats.fsmigrate_options, heartbeats)
    options = checks.resolve_options(info, {"window": "3h", "collection": "hb"})
    assert options == {
        "max_docs": 50,
        "window": 3 * HOUR,
        "collection": "hb",
        "history": 7 * 24 * HOUR,
    }
    found = heartbeats(store, **options)

    assert store.scanned == ["hb"] and found.check == "heartbeats"
    assert found.details["collection"] == "hb" and found.labels == {"collection": "hb"}
    # no last_heartbeat: its update time (2 h ago) is inside the 3 h window
    assert found.details["legacy_in_window"] == ["FooProcessor_None_0a1b2c3d"]
    assert found.details["window_seconds"] == 3 * 3600 and not found.healthy
    with pytest.raises(UsageError, match="--window"):
        checks.resolve_options(info, {"window": "1y"})
    assert heartbeats(FakeStore([]), window="7d").details["window_seconds"] == 7 * 86400


def test_the_installed_entry_point_is_this_function():
    from fsmigrate import checks
    from fsmigrate.heartbeats.check import heartbeats

    info = checks.load("heartbeats")
    assert info.fn is heartbeats
    assert info.summary == (
        "Count heartbeat documents by ID kind and flag growth and legacy writers."
    )


# ---- the time series of --format html ----------------------------------------------------


def test_series_count_legacy_writes_per_hour_and_the_collection_by_last_write():
    now = dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    docs = [
        ("PlayerGameSummaryProcessor", now - dt.timedelta(minutes=1)),
        ("FooProcessor_None_00000001", now - dt.timedelta(minutes=10)),  # 12:00 bucket
        ("FooProcessor_None_00000002", now - dt.timedelta(minutes=20)),  # 12:00
        ("FooProcessor_None_00000003", now - dt.timedelta(minutes=50)),  # 11:00
        ("FooProcessor_2025-02-27_00000004", now - dt.timedelta(hours=47)),  # 2-27 13:00
        ("FooProcessor_None_00000005", now - dt.timedelta(days=9)),  # before the chart
        ("FooProcessor_None_00000006", now + dt.timedelta(hours=3)),  # clock ahead
        ("weird id", now - dt.timedelta(hours=5)),
    ]
    health = assess(docs, now=now, window=HOUR, max_docs=5, history=dt.timedelta(days=2))

    legacy, level = health.series()

    assert (legacy.name, legacy.bucket, legacy.style, legacy.threshold) == (
        "legacy_written",
        HOUR,
        "bars",
        0,
    )
    assert (level.name, level.style, level.threshold) == ("documents", "line", 5)
    starts = [p.start for p in legacy.points]
    assert starts[0] == dt.datetime(2025, 2, 27, 12, tzinfo=dt.timezone.utc)
    assert starts[-1] == dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc)
    assert all(b - a == HOUR for a, b in zip(starts, starts[1:])) and len(starts) == 49
    written = {p.start.strftime("%d %H"): p.value for p in legacy.points if p.value}
    assert written == {"27 13": 1, "01 11": 1, "01 12": 3}  # the one ahead counts as now
    assert [p.start for p in level.points] == starts
    assert level.points[0].value == 1  # the 9-day-old document, before the chart
    assert level.points[-1].value == health.total == 8
    values = [p.value for p in level.points]
    assert values == sorted(values)


def test_series_are_daily_beyond_seven_days_and_cover_at_least_the_window():
    now = dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    docs = [("FooProcessor_None_00000001", now - dt.timedelta(days=20))]
    daily = assess(docs, now=now, window=HOUR, max_docs=5, history=dt.timedelta(days=30))
    legacy = daily.series()[0]
    assert legacy.bucket == dt.timedelta(days=1) and len(legacy.points) == 31
    assert "per day" in legacy.title and sum(p.value for p in legacy.points) == 1
    wide = assess(
        docs, now=now, window=dt.timedelta(days=10), max_docs=5, history=dt.timedelta(days=1)
    )
    assert wide.series()[0].points[0].start <= now - dt.timedelta(days=10)
