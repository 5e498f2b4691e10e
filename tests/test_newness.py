"""normalize.newness orders a Store's documents from their protobufs (decoding nothing):
the same order, to the same tuple, as their decoded values give."""

from __future__ import annotations

from google.cloud.firestore_v1.types import Document, Value
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from fsmigrate.firestore.store import Doc
from fsmigrate.normalize import newness

SECONDS = st.integers(min_value=-62135596800, max_value=253402300799)
NANOS = st.integers(min_value=0, max_value=999_999_999)
STAMPS = st.builds(Timestamp, seconds=SECONDS, nanos=NANOS)
VALUES = st.one_of(
    st.builds(lambda t: Value(timestamp_value=t)._pb, STAMPS),
    st.builds(lambda i: Value(integer_value=i)._pb, st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda f: Value(double_value=f)._pb, st.floats(allow_nan=False)),
    st.builds(lambda b: Value(boolean_value=b)._pb, st.booleans()),
    st.builds(lambda s: Value(string_value=s)._pb, st.text(max_size=5)),
    st.just(Value(null_value=0)._pb),
)


class Decoded:
    """The same document seen through its decoded values only (no protobuf)."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc

    def get(self, field: str, default=None):
        return self.doc.get(field, default)

    @property
    def update_time(self):
        return self.doc.update_time


def document(updated: Timestamp, field: str, value, nested: bool) -> Doc:
    pb = Document(name="projects/p/databases/(default)/documents/c/d")._pb
    pb.update_time.CopyFrom(updated)
    pb.create_time.CopyFrom(updated)
    if value is not None:
        if nested:
            pb.fields["outer"].map_value.fields[field].CopyFrom(value)
        else:
            pb.fields[field].CopyFrom(value)
    return Doc(pb, None)


@given(
    st.lists(st.tuples(STAMPS, st.one_of(st.none(), VALUES)), min_size=2, max_size=4),
    st.booleans(),
    st.sampled_from(["t", "outer.t", "missing", "outer.missing.t", None]),
)
def test_a_documents_newness_from_its_protobuf_is_that_of_its_values(
    docs, nested: bool, field
) -> None:
    read = [document(updated, "t", value, nested) for updated, value in docs]
    from_pb = [newness(d, field) for d in read]
    from_values = [newness(Decoded(d), field) for d in read]
    assert from_pb == from_values
    assert sorted(range(len(read)), key=from_pb.__getitem__) == sorted(
        range(len(read)), key=from_values.__getitem__
    )
