"""The compact journal (pure): every value a row is given reads back exactly as the
uncompressed layout held it, and what is left out (a delete's Write, the after-image) is
rebuilt byte for byte."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from hypothesis import given, settings
from hypothesis import strategies as st
from proto.datetime_helpers import DatetimeWithNanoseconds

from fsmigrate.firestore.store import Store, Target
from fsmigrate.scripts.operations import DELETE, MUST_NOT_EXIST, NONE, Operation, Precondition
from fsmigrate.state import compact
from fsmigrate.times import rfc3339

SECONDS = st.integers(-62_135_596_800, 253_402_300_799)
NANOS = st.integers(0, 999_999_999)
segment = st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
paths = st.tuples(segment, segment).map("/".join)


def when(seconds: int, nanos: int) -> DatetimeWithNanoseconds:
    base = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return DatetimeWithNanoseconds(
        base.year,
        base.month,
        base.day,
        base.hour,
        base.minute,
        base.second,
        nanosecond=nanos,
        tzinfo=dt.timezone.utc,
    )


@given(SECONDS, NANOS)
def test_an_update_time_precondition_reads_back_as_the_same_json(seconds: int, nanos: int) -> None:
    pre = Precondition(update_time=when(seconds, nanos))
    stored = compact.encode_precondition(pre)
    assert isinstance(stored[0], int)  # 8 bytes instead of ~50 of JSON
    assert compact.decode_precondition(*stored) == pre.to_json()
    assert compact.precondition_value(*stored) == json.loads(pre.to_json())  # no text between
    assert compact.time_text(stored[0]) == rfc3339(pre.update_time)
    # the JSON form too (kept as text for years before 1000, which print with 3 digits)
    from_json = compact.encode_precondition(pre.to_json())
    assert compact.decode_precondition(*from_json) == pre.to_json()
    assert from_json == stored or pre.update_time.year < 1000


@given(st.sampled_from([NONE, MUST_NOT_EXIST, Precondition(exists=True)]))
def test_the_other_preconditions_read_back_too(pre: Precondition) -> None:
    stored = compact.encode_precondition(pre)
    assert compact.decode_precondition(*stored) == pre.to_json()
    assert compact.precondition_value(*stored) == (pre.to_json() and json.loads(pre.to_json()))


@given(st.text(max_size=40))
def test_text_that_is_not_a_timestamp_is_kept_as_it_is(text: str) -> None:
    assert compact.decode_time(compact.encode_time(text)) == text
    odd = json.dumps({"something": text})
    assert compact.decode_precondition(*compact.encode_precondition(odd)) == odd
    assert compact.precondition_value(*compact.encode_precondition(odd)) == json.loads(odd)


@given(paths, st.text(max_size=30), st.sampled_from(["{p} -> {c}x", "{p}", "{c}{c}", "x {p} {p}"]))
def test_labels_read_back_exactly_with_the_path_left_out(path: str, extra: str, shape: str) -> None:
    collection = path.rsplit("/", 1)[0] + "/"
    label = shape.format(p=path, c=collection) + extra
    stored = compact.encode_label(label, path)
    assert compact.decode_label(stored, path) == label
    if path in label and not any(m in label for m in "\x1d\x1e\x1f"):
        assert len(stored) < len(label)


@settings(max_examples=50)
@given(
    paths, st.one_of(st.just(None), st.tuples(SECONDS, NANOS)), st.sampled_from([None, False, True])
)
def test_a_delete_write_is_rebuilt_byte_for_byte(path: str, time, exists) -> None:
    store = Store(
        Target("p", "(default)"),
        client=firestore.Client(project="p", credentials=AnonymousCredentials()),
    )
    pre = Precondition(update_time=when(*time)) if time else Precondition(exists=exists)
    built = store.build_write(Operation(DELETE, path, precondition=pre))
    run = compact.RunInfo(1, "r", "projects/p/databases/(default)/documents/")
    record = SimpleNamespace(
        seq=0,
        kind=DELETE,
        path=path,
        precondition=pre,
        before=None,
        write=built,
        after=None,
        group=None,
        label=None,
        status="pending",
        reason=None,
    )
    rows, blocks = compact.encode(run, 1, [record], 0)
    assert blocks == [] and rows[0][compact.COLUMNS.index("blk")] is None  # nothing stored
    row = dict(zip(compact.COLUMNS, rows[0], strict=True))
    assert compact.OpRow(row, run, compact.Blocks(lambda *a: None))["write"] == built


def test_blocks_hold_images_writes_and_afters_and_stay_under_their_size() -> None:
    run = compact.RunInfo(1, "r", "projects/p/databases/(default)/documents/")
    big = bytes(range(256)) * 1200  # 300 KB: three fit in a block of 1 MiB, not four
    writes = [compact._WritePb(update={"name": f"x/{i}"}).SerializeToString() for i in range(5)]
    records = [
        SimpleNamespace(
            seq=i,
            kind="update",
            path=f"c/d{i}",
            precondition=None,
            before=big[i:] + bytes([i]),
            write=writes[i],
            after='{"a":1}' if i == 2 else None,
            group=None,
            label=None,
            status="pending",
            reason=None,
        )
        for i in range(5)
    ]
    rows, blocks = compact.encode(run, 1, records, 7)
    assert [blk for blk, _ in blocks] == [7, 8]
    assert [row[compact.COLUMNS.index("blk")] for row in rows] == [7, 7, 7, 8, 8]
    by_blk = dict(blocks)
    for record, row in zip(records, rows, strict=True):
        op = compact.OpRow(
            dict(zip(compact.COLUMNS, row, strict=True)),
            run,
            compact.Blocks(lambda _run, blk: by_blk.get(blk)),
        )
        after = record.after or "{}"  # given (kept: it is not the write's), or rendered
        assert (op["before"], op["write"], op["after"]) == (record.before, record.write, after)
    assert sum(len(data) for data in by_blk.values()) < len(big)  # compressed together


def test_a_run_that_keeps_paths_only_stores_no_image_whoever_journals_it() -> None:
    run = compact.RunInfo(1, "r", "projects/p/databases/(default)/documents/", archive="paths")
    record = SimpleNamespace(
        seq=0,
        kind="update",
        path="c/d",
        precondition=None,
        before=b"SECRET document",
        write=b"\n\x03x/y",
        after=None,
        group=None,
        label=None,
        status="pending",
        reason=None,
    )
    _, blocks = compact.encode(run, 1, [record], 0)
    assert b"SECRET" not in compact.unpack(blocks[0][1])[0].write
    assert compact.unpack(blocks[0][1])[0].before is None
