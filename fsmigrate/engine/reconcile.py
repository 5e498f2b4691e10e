"""Did a write land? Decided by re-reading, never by assuming (pure: no I/O here).

Used when a commit's outcome is unknown (a transient error after the request was sent,
or a run killed between sending a batch and recording its outcome). Each journaled
operation is compared with the document as it is now:

  LANDED     the document is in the state the write leaves it in (a delete: gone);
  NOT_SENT   the precondition still holds: the document is as it was planned, so the
             write did not happen and can be sent again safely;
  CHANGED    neither: someone else changed the document; the operation is skipped;
  UNKNOWN    cannot be told apart (a write with server-side transforms): stop and ask.
"""

from __future__ import annotations

from typing import Any, Optional

from google.cloud.firestore_v1 import types
from google.cloud.firestore_v1.field_path import FieldPath

from fsmigrate.firestore import codec
from fsmigrate.scripts.operations import DELETE, Precondition

LANDED = "landed"
NOT_SENT = "not_sent"
CHANGED = "changed"
UNKNOWN = "unknown"

_WritePb = types.Write.pb()


def parse_write(raw: bytes) -> Any:
    write = _WritePb()
    write.ParseFromString(raw)
    return write


def outcome(
    kind: str, precondition: Precondition, write_raw: Optional[bytes], current: Optional[Any]
) -> str:
    """Classify one journaled operation against `current` (a store Doc or None)."""
    if precondition.holds_for(current) and not (kind == DELETE and current is None):
        return NOT_SENT
    if kind == DELETE:
        return LANDED if current is None else CHANGED
    if current is None or write_raw is None:
        return CHANGED
    write = parse_write(write_raw)
    if len(write.update_transforms):
        return UNKNOWN
    now = current.pb.fields
    if write.HasField("update_mask"):
        for path in write.update_mask.field_paths:
            if _render(_at(write.update.fields, path)) != _render(_at(now, path)):
                return CHANGED
        return LANDED
    return LANDED if _render_map(write.update.fields) == _render_map(now) else CHANGED


def _at(fields: Any, path: str) -> Optional[Any]:
    """The value at a (possibly dotted, possibly `quoted`) field path, or None."""
    parts = FieldPath.from_string(path).parts
    node = fields
    for i, part in enumerate(parts):
        if part not in node:
            return None
        value = node[part]
        if i == len(parts) - 1:
            return value
        if value.WhichOneof("value_type") != "map_value":
            return None
        node = value.map_value.fields
    return None


def _render(value: Optional[Any]) -> Optional[str]:
    return None if value is None else codec.render_json(codec.value_to_json(value))


def _render_map(fields: Any) -> str:
    return codec.render_json(codec.fields_to_json(fields))
