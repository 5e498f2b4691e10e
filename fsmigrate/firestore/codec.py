"""Conversions between Firestore documents, bytes, Python data and readable JSON.

Before-images are stored as serialized ``types.Document`` protobufs (exact type
fidelity). People see JSON rendered from them; that JSON is strict (no NaN /
Infinity literals) and converts back to exactly the same protobuf values:

======================  ===============================================
Firestore value         JSON
======================  ===============================================
null                    ``null``
boolean                 ``true`` / ``false``
integer                 integer (``1``)
double, finite          float, always with a dot or exponent (``1.0``, ``-0.0``)
double, non-finite      ``{"$double": "NaN" | "Infinity" | "-Infinity"}``
string                  string
bytes                   ``{"$bytes": "<base64>"}``
timestamp               ``{"$timestamp": "2024-01-02T03:04:05.123456789Z"}``
geo point               ``{"$geo": [lat, lng]}``
reference               ``{"$ref": "projects/p/databases/d/documents/c/id"}``
array                   list
map                     object; a map with exactly one key that starts with
                        ``$`` is escaped as ``{"$map": {...}}``
======================  ===============================================

Functions accept proto-plus wrappers (``types.Value``, ``types.Document``) or the
raw protobuf messages underneath; they never touch the network.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from google.cloud.firestore_v1 import _helpers, types
from google.protobuf import timestamp_pb2

__all__ = [
    "document_to_bytes",
    "bytes_to_document",
    "make_document",
    "document_path",
    "encode_data",
    "decode_fields",
    "format_timestamp",
    "parse_timestamp",
    "value_to_json",
    "json_to_value",
    "fields_to_json",
    "json_to_fields",
    "document_to_json",
    "json_to_document",
    "render_json",
]

_ValuePb = types.Value.pb()
_DocumentPb = types.Document.pb()
_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TIMESTAMP_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _raw(msg: Any) -> Any:
    """The raw protobuf message under a proto-plus wrapper (or ``msg`` itself)."""
    return getattr(msg, "_pb", msg)


# ---- bytes and documents ------------------------------------------------------------


def document_to_bytes(doc: types.Document) -> bytes:
    return types.Document.serialize(doc)


def bytes_to_document(raw: bytes) -> types.Document:
    return types.Document.deserialize(raw)


def make_document(
    name: str,
    fields: Mapping[str, types.Value],
    create_time: dt.datetime | timestamp_pb2.Timestamp | str | None = None,
    update_time: dt.datetime | timestamp_pb2.Timestamp | str | None = None,
) -> types.Document:
    """Build a Document. Times may be datetimes (``DatetimeWithNanoseconds`` keeps
    its nanoseconds; naive means UTC), Timestamp protobufs or RFC 3339 strings."""
    pb = _DocumentPb(name=name)
    for key, value in fields.items():
        pb.fields[key].CopyFrom(_raw(value))
    for target, when in ((pb.create_time, create_time), (pb.update_time, update_time)):
        if when is not None:
            target.CopyFrom(to_timestamp(when))
    return types.Document.wrap(pb)


def document_path(name: str) -> str:
    """``projects/p/databases/d/documents/a/b`` -> ``a/b``."""
    parts = name.split("/")
    if (
        len(parts) < 7
        or len(parts) % 2 == 0
        or parts[0] != "projects"
        or parts[2] != "databases"
        or parts[4] != "documents"
        or "" in parts
    ):
        raise ValueError(f"not a document resource name: {name!r}")
    return "/".join(parts[5:])


# ---- python data (the client's own conversion) --------------------------------------


def encode_data(data: Mapping[str, Any]) -> dict[str, types.Value]:
    """Python data -> Values, exactly as the Firestore client encodes it on write."""
    return _helpers.encode_dict(data)


def decode_fields(fields: Mapping[str, types.Value], client: Any) -> dict[str, Any]:
    """Values -> Python data, as ``DocumentSnapshot.to_dict()`` returns it.

    ``client`` is only used for reference values (to build DocumentReferences);
    ``None`` works when there are none. A document's top level is always a dict: its
    fields are decoded one by one, where the client's ``decode_dict`` would turn a
    document whose fields look like a special map (``{"__int__": 5}``, a ``__type__:
    __vector__`` map) into that value. Maps inside fields decode as the client does."""
    fields_pb = getattr(fields, "_pb", fields)
    return {name: _helpers.decode_value(value, client) for name, value in fields_pb.items()}


# ---- timestamps ---------------------------------------------------------------------


def format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 UTC with all nanoseconds (trimmed to 0, 3, 6 or 9 digits)."""
    if not 0 <= ts.nanos <= 999_999_999:
        raise ValueError(f"timestamp nanos out of range: {ts.nanos}")
    try:
        t = _EPOCH + dt.timedelta(seconds=ts.seconds)
    except OverflowError:
        raise ValueError(f"timestamp seconds out of range: {ts.seconds}") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    n = ts.nanos
    if n:
        text += (
            f".{n // 1_000_000:03d}"
            if n % 1_000_000 == 0
            else f".{n // 1000:06d}"
            if n % 1000 == 0
            else f".{n:09d}"
        )
    return text + "Z"


def parse_timestamp(text: str) -> timestamp_pb2.Timestamp:
    """Inverse of :func:`format_timestamp` (accepts 0-9 fraction digits, ``Z`` only)."""
    m = _TIMESTAMP_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        t = dt.datetime(year, month, day, hour, minute, second, tzinfo=_UTC)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r} ({exc})") from None
    delta = t - _EPOCH
    nanos = int((m.group(7) or "0").ljust(9, "0"))
    return timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=nanos)


def to_timestamp(when: dt.datetime | timestamp_pb2.Timestamp | str) -> timestamp_pb2.Timestamp:
    """A Timestamp protobuf of a datetime (``DatetimeWithNanoseconds`` keeps its
    nanoseconds; naive means UTC), an RFC 3339 string, or a Timestamp (as it is)."""
    if isinstance(when, timestamp_pb2.Timestamp):
        return when
    if isinstance(when, str):
        return parse_timestamp(when)
    if isinstance(when, dt.datetime):
        nanos = getattr(when, "nanosecond", when.microsecond * 1000)
        if when.tzinfo is None:
            when = when.replace(tzinfo=_UTC)
        delta = when - _EPOCH  # floor semantics: delta.seconds/microseconds >= 0
        return timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=nanos)
    raise TypeError(f"not a timestamp: {when!r}")


# ---- JSON ---------------------------------------------------------------------------


def value_to_json(v: types.Value) -> Any:
    return _pb_to_json(_raw(v))


def _pb_to_json(pb: Any) -> Any:
    kind = pb.WhichOneof("value_type")
    if kind == "null_value":
        return None
    if kind == "boolean_value":
        return pb.boolean_value
    if kind == "integer_value":
        return pb.integer_value
    if kind == "double_value":
        x = pb.double_value
        if math.isnan(x):
            return {"$double": "NaN"}
        if math.isinf(x):
            return {"$double": "Infinity" if x > 0 else "-Infinity"}
        return x
    if kind == "string_value":
        return pb.string_value
    if kind == "bytes_value":
        return {"$bytes": base64.b64encode(pb.bytes_value).decode("ascii")}
    if kind == "timestamp_value":
        return {"$timestamp": format_timestamp(pb.timestamp_value)}
    if kind == "geo_point_value":
        lat, lng = pb.geo_point_value.latitude, pb.geo_point_value.longitude
        if not (math.isfinite(lat) and math.isfinite(lng)):
            raise ValueError(f"geo point is not finite: {lat}, {lng}")
        return {"$geo": [lat, lng]}
    if kind == "reference_value":
        return {"$ref": pb.reference_value}
    if kind == "array_value":
        return [_pb_to_json(item) for item in pb.array_value.values]
    if kind == "map_value":
        out = _fields_to_json(pb.map_value.fields)
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$map": out}
        return out
    raise ValueError(f"Value has no value set (value_type={kind!r})")


def _fields_to_json(fields: Any) -> dict[str, Any]:
    return {key: _pb_to_json(_raw(value)) for key, value in fields.items()}


def json_to_value(obj: Any) -> types.Value:
    pb = _ValuePb()
    _fill(pb, obj)
    return types.Value.wrap(pb)


def _fill(pb: Any, obj: Any) -> None:
    """Set the raw Value ``pb`` from its JSON form ``obj``."""
    if obj is None:
        pb.null_value = 0
    elif isinstance(obj, bool):
        pb.boolean_value = obj
    elif isinstance(obj, int):
        if not _INT64_MIN <= obj <= _INT64_MAX:
            raise ValueError(f"integer out of int64 range: {obj}")
        pb.integer_value = obj
    elif isinstance(obj, float):
        pb.double_value = obj
    elif isinstance(obj, str):
        pb.string_value = obj
    elif isinstance(obj, list):
        pb.array_value.SetInParent()
        for item in obj:
            _fill(pb.array_value.values.add(), item)
    elif isinstance(obj, dict):
        if len(obj) == 1 and isinstance(key := next(iter(obj)), str) and key.startswith("$"):
            _fill_typed(pb, key, obj[key])
        else:
            _fill_map(pb, obj)
    else:
        raise ValueError(f"not a JSON value: {type(obj).__name__}")


def _fill_map(pb: Any, obj: Any) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"a map must be a JSON object, not {type(obj).__name__}")
    pb.map_value.SetInParent()
    for key, item in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"map key must be a string: {key!r}")
        _fill(pb.map_value.fields[key], item)


def _fill_typed(pb: Any, key: str, arg: Any) -> None:
    if key == "$map":
        _fill_map(pb, arg)
    elif key == "$double":
        if not isinstance(arg, str) or arg not in _NON_FINITE:
            raise ValueError(f'$double must be "NaN", "Infinity" or "-Infinity": {arg!r}')
        pb.double_value = _NON_FINITE[arg]
    elif key == "$bytes":
        try:
            pb.bytes_value = base64.b64decode(arg, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError(f"$bytes is not valid base64: {arg!r}") from None
    elif key == "$timestamp":
        pb.timestamp_value.CopyFrom(parse_timestamp(arg))
    elif key == "$geo":
        if not (
            isinstance(arg, list)
            and len(arg) == 2
            and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in arg
            )
        ):
            raise ValueError(f"$geo must be [latitude, longitude]: {arg!r}")
        pb.geo_point_value.SetInParent()
        pb.geo_point_value.latitude, pb.geo_point_value.longitude = float(arg[0]), float(arg[1])
    elif key == "$ref":
        if not isinstance(arg, str):
            raise ValueError(f"$ref must be a string: {arg!r}")
        pb.reference_value = arg
    else:
        raise ValueError(f'unknown typed value {key!r} (escape maps like this as {{"$map": ...}})')


def fields_to_json(fields: Mapping[str, types.Value]) -> dict[str, Any]:
    return _fields_to_json(fields)


def json_to_fields(obj: Mapping[str, Any]) -> dict[str, types.Value]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"fields must be a JSON object, not {type(obj).__name__}")
    return {key: json_to_value(item) for key, item in obj.items()}


def document_to_json(doc: types.Document) -> dict[str, Any]:
    """{"name", "path", "create_time", "update_time", "fields"}; unset times are None.
    ``path`` is informational: :func:`json_to_document` uses ``name``."""
    pb = _raw(doc)
    return {
        "name": pb.name,
        "path": document_path(pb.name),
        "create_time": format_timestamp(pb.create_time) if pb.HasField("create_time") else None,
        "update_time": format_timestamp(pb.update_time) if pb.HasField("update_time") else None,
        "fields": _fields_to_json(pb.fields),
    }


def json_to_document(obj: Mapping[str, Any]) -> types.Document:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str):
        raise ValueError('a document must be a JSON object with a string "name"')
    pb = _DocumentPb(name=obj["name"])
    fields = obj.get("fields", {})
    if not isinstance(fields, Mapping):
        raise ValueError('document "fields" must be a JSON object')
    for key, item in fields.items():
        _fill(pb.fields[key], item)
    for attr in ("create_time", "update_time"):
        if obj.get(attr) is not None:
            getattr(pb, attr).CopyFrom(parse_timestamp(obj[attr]))
    return types.Document.wrap(pb)


def render_json(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )
