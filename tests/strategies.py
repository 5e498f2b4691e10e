"""Hypothesis strategies for Firestore values, fields and Python document data,
plus type-exact equality helpers (NaN == NaN, -0.0 != 0.0, map order ignored)."""

from __future__ import annotations

import datetime as dt
import math
import re
import string
import struct
from collections.abc import Mapping
from typing import Any

from google.cloud.firestore_v1 import GeoPoint, types
from hypothesis import strategies as st

_ValuePb = types.Value.pb()
_RESERVED = re.compile(r"__.*__", re.DOTALL)
INT64 = (-(2**63), 2**63 - 1)
# 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, Firestore's allowed range.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
DATABASE = "projects/p/databases/(default)"

_utf8 = st.characters(codec="utf-8")  # every code point except surrogates
_text = st.text(_utf8, max_size=20)
_dollar_keys = st.sampled_from(
    ["$", "$x", "$map", "$bytes", "$double", "$timestamp", "$geo", "$ref", "$$"]
) | st.text(_utf8, max_size=6).map(lambda s: "$" + s)
_map_keys = st.text(_utf8, min_size=1, max_size=10) | _dollar_keys | st.just("__type__")
field_names = st.text(_utf8, min_size=1, max_size=12).filter(lambda k: not _RESERVED.fullmatch(k))


def _raw(v: Any) -> Any:
    return getattr(v, "_pb", v)


def _value(**kwargs: Any) -> types.Value:
    return types.Value.wrap(_ValuePb(**kwargs))


def _timestamp_value(seconds: int, nanos: int) -> types.Value:
    pb = _ValuePb()
    pb.timestamp_value.seconds, pb.timestamp_value.nanos = seconds, nanos
    return types.Value.wrap(pb)


def _geo_value(lat: float, lng: float) -> types.Value:
    pb = _ValuePb()
    pb.geo_point_value.latitude, pb.geo_point_value.longitude = lat, lng
    return types.Value.wrap(pb)


def array_value(items: list[types.Value]) -> types.Value:
    pb = _ValuePb()
    pb.array_value.SetInParent()
    for item in items:
        pb.array_value.values.add().CopyFrom(_raw(item))
    return types.Value.wrap(pb)


def map_value(fields: Mapping[str, types.Value]) -> types.Value:
    pb = _ValuePb()
    pb.map_value.SetInParent()
    for key, item in fields.items():
        pb.map_value.fields[key].CopyFrom(_raw(item))
    return types.Value.wrap(pb)


def _is_array(v: types.Value) -> bool:
    return _raw(v).WhichOneof("value_type") == "array_value"


# ---- pieces ----------------------------------------------------------------------

doubles = st.floats() | st.sampled_from(
    [-0.0, 0.0, 5e-324, -5e-324, 2.2250738585072009e-308, math.nan, math.inf, -math.inf, 1.0, 1e300]
)
nanos = (
    st.integers(0, 999_999_999)
    | st.integers(0, 999).map(lambda n: n * 1_000_000)
    | st.integers(0, 999_999).map(lambda n: n * 1000)
    | st.just(0)
)
timestamps = st.tuples(st.integers(*TIMESTAMP_SECONDS), nanos)
_ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12).filter(
    lambda s: not _RESERVED.fullmatch(s)
)
document_paths = st.lists(st.tuples(_ids, _ids), min_size=1, max_size=3).map(
    lambda pairs: "/".join(f"{c}/{i}" for c, i in pairs)
)
document_names = document_paths.map(lambda p: f"{DATABASE}/documents/{p}")


def vector_values() -> st.SearchStrategy[types.Value]:
    return st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=4).map(
        lambda xs: map_value(
            {
                "__type__": _value(string_value="__vector__"),
                "value": array_value([_value(double_value=x) for x in xs]),
            }
        )
    )


def _leaves() -> st.SearchStrategy[types.Value]:
    return st.one_of(
        st.just(None).map(lambda _: _value(null_value=0)),
        st.booleans().map(lambda b: _value(boolean_value=b)),
        st.integers(*INT64).map(lambda i: _value(integer_value=i)),
        doubles.map(lambda x: _value(double_value=x)),
        _text.map(lambda s: _value(string_value=s)),
        st.binary(max_size=32).map(lambda b: _value(bytes_value=b)),
        timestamps.map(lambda t: _timestamp_value(*t)),
        st.tuples(st.floats(-90, 90), st.floats(-180, 180)).map(lambda g: _geo_value(*g)),
        document_names.map(lambda n: _value(reference_value=n)),
        vector_values(),
    )


def _extend(children: st.SearchStrategy[types.Value]) -> st.SearchStrategy[types.Value]:
    non_arrays = children.filter(lambda v: not _is_array(v))  # no arrays in arrays
    return st.one_of(
        st.lists(non_arrays, max_size=4).map(array_value),
        st.dictionaries(_map_keys, children, max_size=4).map(map_value),
        st.dictionaries(_dollar_keys, children, min_size=1, max_size=1).map(map_value),
    )


def firestore_values() -> st.SearchStrategy[types.Value]:
    """``types.Value`` of every kind, nested maps and arrays (never arrays in arrays)."""
    return st.recursive(_leaves(), _extend, max_leaves=16)


def firestore_fields() -> st.SearchStrategy[dict[str, types.Value]]:
    """Document fields: non-empty names, never the reserved ``__...__``."""
    return st.dictionaries(field_names, firestore_values(), max_size=6)


# ---- python data as the client writes it -----------------------------------------

_py_keys = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=12
).filter(lambda k: not _RESERVED.fullmatch(k))
_py_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(*INT64),
    doubles,
    _text,
    st.binary(max_size=32),
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(dt.timezone.utc),
    ),
    st.builds(GeoPoint, st.floats(-90, 90), st.floats(-180, 180)),
)


def _py_extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children.filter(lambda x: not isinstance(x, list)), max_size=4),
        st.dictionaries(_py_keys, children, max_size=4),
    )


def python_document_data() -> st.SearchStrategy[dict[str, Any]]:
    """Dicts the Firestore client accepts for ``set()``: None, bool, int64, float (incl.
    NaN, ±inf, -0.0), str, bytes, UTC datetimes (microseconds), GeoPoint, nested dicts,
    lists (never lists in lists). No DocumentReference (needs a client) and no
    ``__x__`` keys (the client decodes those maps as vectors / BSON types)."""
    return st.dictionaries(
        _py_keys, st.recursive(_py_leaves, _py_extend, max_leaves=12), max_size=6
    )


# ---- equality ----------------------------------------------------------------------


def _f(x: float) -> Any:
    return "nan" if math.isnan(x) else struct.pack("<d", x)


def canonical(v: types.Value) -> Any:
    """A hashable form of a Value: NaNs collapse, -0.0 stays distinct, maps are sorted."""
    pb = _raw(v)
    kind = pb.WhichOneof("value_type")
    if kind == "double_value":
        return kind, _f(pb.double_value)
    if kind == "timestamp_value":
        return kind, pb.timestamp_value.seconds, pb.timestamp_value.nanos
    if kind == "geo_point_value":
        return kind, _f(pb.geo_point_value.latitude), _f(pb.geo_point_value.longitude)
    if kind == "array_value":
        return kind, tuple(canonical(item) for item in pb.array_value.values)
    if kind == "map_value":
        return kind, canonical_fields(pb.map_value.fields)
    if kind is None:
        return None
    value = getattr(pb, kind)
    return kind, type(value).__name__, value


def canonical_fields(fields: Mapping[str, types.Value]) -> Any:
    return tuple(sorted((key, canonical(value)) for key, value in fields.items()))


def values_equal(a: types.Value, b: types.Value) -> bool:
    return canonical(a) == canonical(b)


def fields_equal(a: Mapping[str, types.Value], b: Mapping[str, types.Value]) -> bool:
    return canonical_fields(a) == canonical_fields(b)


def documents_equal(a: types.Document, b: types.Document) -> bool:
    pa, pb = _raw(a), _raw(b)

    def times(d: Any) -> tuple:
        return tuple(
            (d.HasField(t), getattr(d, t).seconds, getattr(d, t).nanos)
            for t in ("create_time", "update_time")
        )

    return pa.name == pb.name and times(pa) == times(pb) and fields_equal(pa.fields, pb.fields)


def python_equal(a: Any, b: Any) -> bool:
    """Python data equality that is exact about types, NaN and -0.0 (for decoded data)."""
    if isinstance(a, float) and isinstance(b, float):
        return _f(a) == _f(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(python_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(python_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, GeoPoint) and isinstance(b, GeoPoint):
        return _f(a.latitude) == _f(b.latitude) and _f(a.longitude) == _f(b.longitude)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and getattr(a, "nanosecond", a.microsecond * 1000) == getattr(
            b, "nanosecond", b.microsecond * 1000
        )
    return type(a) is type(b) and a == b
