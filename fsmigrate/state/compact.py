"""The compact journal of operations in the state file (schema 4). Pure: no SQL here.

An operation is one small row of `ops`: its run's integer key and its sequence (the
primary key of a table without rowids), batch, kind, path, group, status and outcome; the
precondition as integers (an update time in nanoseconds, or exists 0/1); the label with
the operation's own path and collection left out (`\\x1e`, `\\x1f`); a CRC of the path
for lookups by document. What is big, or derivable, is not in the row:

- the before-images and `Write` protobufs of a batch are packed into blocks of at most
  1 MiB and compressed together with zlib (`blocks`): documents of one collection share
  their field names and most values, so a block is ~10x smaller than its documents;
- the `Write` of a delete is not stored when it is the one its path and precondition give
  (always, for the writes fsmigrate builds): it is rebuilt, byte for byte, when read;
- the after-image is rendered from the `Write` when read.

`OpRow` reads a row back with the keys of the uncompressed layout (schema 3):
run_id, seq, batch, kind, path, precondition (JSON), before, after (JSON), write, grp,
label, status, reason, commit_time, error. Values that do not fit the compact form (a
commit time that is not a timestamp, a precondition in another shape) are kept as text.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from google.cloud.firestore_v1 import types
from google.protobuf.message import DecodeError

from fsmigrate.firestore import codec
from fsmigrate.scripts.operations import DELETE, Precondition

BLOCK_FORMAT = b"\x01"  # first byte of a block: zlib of the entries below
BLOCK_BYTES = 1 << 20  # entries per block, uncompressed (a document is at most 1 MiB)
ZLIB_LEVEL = 6
_ENTRY = struct.Struct("<QB")  # seq, flags; then per part present: <I length, bytes
_LEN = struct.Struct("<I")
BEFORE, WRITE, AFTER, NO_WRITE = 1, 2, 4, 8
PATH_MARK, COLLECTION_MARK, RAW_MARK = "\x1e", "\x1f", "\x1d"  # ASCII separators
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_DAY = _EPOCH.date().toordinal()
_NS = 1_000_000_000
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(\d{6}|\d{9})Z")
_WritePb = types.Write.pb()
KEYS = (
    "run_id",
    "seq",
    "batch",
    "kind",
    "path",
    "precondition",
    "before",
    "after",
    "write",
    "grp",
    "label",
    "status",
    "reason",
    "commit_time",
    "error",
)
_PLAIN = frozenset(("seq", "batch", "kind", "path", "grp", "status", "reason", "error"))
# the columns of `ops` (and of the dry-run scratch table) in the order `encode` fills them
COLUMNS = (
    "run",
    "seq",
    "batch",
    "kind",
    "path",
    "pre_time",
    "pre_exists",
    "grp",
    "label",
    "status",
    "reason",
    "commit_time",
    "error",
    "blk",
    "phash",
)


# ---- times and preconditions ----------------------------------------------------------------


def nanos_of(value: dt.datetime) -> int:
    """Nanoseconds since the epoch of a datetime (DatetimeWithNanoseconds keeps its own)."""
    nanos = getattr(value, "nanosecond", None)
    value = value.astimezone(dt.timezone.utc)
    frac = nanos if nanos is not None else value.microsecond * 1000
    whole = value.replace(microsecond=0) - _EPOCH
    return (whole.days * 86400 + whole.seconds) * _NS + frac


def time_text(nanos: int) -> str:
    """The text `fsmigrate.times.rfc3339` gives for that instant (9 digits only when needed)."""
    seconds, frac = divmod(nanos, _NS)
    days, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    base = f"{_day_text(days)}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{base}.{frac:09d}Z" if frac % 1000 else f"{base}.{frac // 1000:06d}Z"


@functools.lru_cache(maxsize=64)  # the operations of a run mostly share a few days
def _day_text(days: int) -> str:
    return (_EPOCH + dt.timedelta(days=days)).strftime("%Y-%m-%d")


@functools.lru_cache(maxsize=256)  # a batch's operations share their commit time
def parse_time(text: str) -> Optional[int]:
    """Nanoseconds of a timestamp text that `time_text` gives back exactly, else None."""
    match = _TIME_RE.fullmatch(text)
    if not match:
        return None
    try:
        day = dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal()
    except ValueError:
        return None
    seconds = (
        (day - _EPOCH_DAY) * 86400
        + int(text[11:13]) * 3600
        + int(text[14:16]) * 60
        + int(text[17:19])
    )
    digits = match.group(1)
    nanos = seconds * _NS + int(digits) * (1000 if len(digits) == 6 else 1)
    return nanos if time_text(nanos) == text else None


def encode_time(value: Optional[str]) -> Any:
    """A commit time for its column: nanoseconds when that round-trips, else the text."""
    if value is None:
        return None
    nanos = parse_time(value)
    return value if nanos is None else nanos


def decode_time(value: Any) -> Optional[str]:
    return time_text(value) if isinstance(value, int) else value


def encode_precondition(pre: Any) -> tuple[Any, Optional[int]]:
    """(pre_time, pre_exists) of a Precondition or its JSON (`Precondition.to_json`)."""
    if pre is None:
        return None, None
    if isinstance(pre, Precondition):
        if pre.update_time is not None:
            return nanos_of(pre.update_time), None
        return None, None if pre.exists is None else int(pre.exists)
    try:
        obj = json.loads(pre)
    except ValueError:
        obj = None
    if (
        isinstance(obj, dict)
        and set(obj) == {"update_time"}
        and isinstance(obj["update_time"], str)
    ):
        nanos = parse_time(obj["update_time"])
        if nanos is not None and decode_precondition(nanos, None) == pre:
            return nanos, None
    if (
        isinstance(obj, dict)
        and set(obj) == {"exists"}
        and isinstance(obj["exists"], bool)
        and decode_precondition(None, int(obj["exists"])) == pre
    ):
        return None, int(obj["exists"])
    return pre, None  # any other shape: kept as it came


def decode_precondition(pre_time: Any, pre_exists: Optional[int]) -> Optional[str]:
    """The precondition's JSON, exactly as `Precondition.to_json` wrote it."""
    if isinstance(pre_time, str):
        return pre_time
    value = precondition_value(pre_time, pre_exists)
    return None if value is None else json.dumps(value)


def precondition_value(pre_time: Any, pre_exists: Optional[int]) -> Any:
    """The precondition's JSON decoded (what `json.loads(decode_precondition(...))` gives,
    without writing and parsing the text: reports list tens of thousands)."""
    if isinstance(pre_time, str):
        return json.loads(pre_time) if pre_time else None
    if pre_time is not None:
        return {"update_time": time_text(pre_time)}
    if pre_exists is not None:
        return {"exists": bool(pre_exists)}
    return None


# ---- labels and paths -----------------------------------------------------------------------


def _collection_prefix(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/"


def encode_label(label: Optional[str], path: str) -> Optional[str]:
    """The label with the operation's path as \\x1e and its collection as \\x1f ("a/x ->
    a/y (merged)" becomes "\\x1e -> \\x1fy (merged)"); raw (marked) if it holds the marks."""
    if label is None:
        return None
    if any(mark in label for mark in (PATH_MARK, COLLECTION_MARK, RAW_MARK)):
        return RAW_MARK + label
    return label.replace(path, PATH_MARK).replace(_collection_prefix(path), COLLECTION_MARK)


def decode_label(stored: Optional[str], path: str) -> Optional[str]:
    if stored is None:
        return None
    if stored.startswith(RAW_MARK):
        return stored[1:]
    return stored.replace(COLLECTION_MARK, _collection_prefix(path)).replace(PATH_MARK, path)


def path_hash(path: str) -> int:
    """A 32-bit signed CRC of the path: what the `ops_phash` index holds instead of paths."""
    return zlib.crc32(path.encode()) - (1 << 31)


# ---- derived writes and after-images -------------------------------------------------------


def delete_write(name: str, pre_time: Any, pre_exists: Optional[int]) -> bytes:
    """The `Write` of a delete of document `name` with this precondition, as
    `Store.build_write` builds it."""
    write = _WritePb(delete=name)
    if isinstance(pre_time, int):
        seconds, nanos = divmod(pre_time, _NS)
        write.current_document.update_time.seconds = seconds
        write.current_document.update_time.nanos = nanos
    elif pre_exists is not None:
        write.current_document.exists = bool(pre_exists)
    return write.SerializeToString()


def after_of(write: Optional[bytes], kind: str) -> Optional[str]:
    """The after-image JSON of a write (None for a delete)."""
    if write is None or kind == DELETE:
        return None
    try:
        pb = _WritePb.FromString(write)
    except DecodeError:  # not a Write: nothing to render (a given after-image is kept)
        return None
    return codec.render_json(codec.fields_to_json(pb.update.fields))


# ---- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """What a block keeps of one operation."""

    before: Optional[bytes] = None
    write: Optional[bytes] = None
    after: Optional[str] = None
    no_write: bool = False


def _entry(seq: int, parts: Parts) -> bytes:
    flags = (
        (BEFORE if parts.before is not None else 0)
        | (WRITE if parts.write is not None else 0)
        | (AFTER if parts.after is not None else 0)
        | (NO_WRITE if parts.no_write else 0)
    )
    out = [_ENTRY.pack(seq, flags)]
    for raw in (
        parts.before,
        parts.write,
        parts.after.encode() if parts.after is not None else None,
    ):
        if raw is not None:
            out += [_LEN.pack(len(raw)), raw]
    return b"".join(out)


def pack(entries: Sequence[bytes]) -> bytes:
    return BLOCK_FORMAT + zlib.compress(b"".join(entries), ZLIB_LEVEL)


def unpack(data: bytes) -> dict[int, Parts]:
    """seq -> Parts of a block."""
    if data[:1] != BLOCK_FORMAT:
        raise ValueError(f"unknown block format {data[:1]!r}")
    raw = zlib.decompress(data[1:])
    out: dict[int, Parts] = {}
    at = 0
    while at < len(raw):
        seq, flags = _ENTRY.unpack_from(raw, at)
        at += _ENTRY.size
        found: list[Optional[bytes]] = []
        for bit in (BEFORE, WRITE, AFTER):
            if flags & bit:
                (size,) = _LEN.unpack_from(raw, at)
                at += _LEN.size
                found.append(raw[at : at + size])
                at += size
            else:
                found.append(None)
        before, write, after = found
        out[seq] = Parts(
            before, write, after.decode() if after is not None else None, bool(flags & NO_WRITE)
        )
    return out


def entry_count(data: bytes) -> tuple[int, int]:
    """(before-images, writes) a block holds."""
    parts = unpack(data).values()
    return (sum(p.before is not None for p in parts), sum(p.write is not None for p in parts))


# ---- encoding a batch -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What reading a run's rows needs: its keys, where its documents live, and whether
    its archive is gone (pruned) or was never kept (a dry-run's scratch rows)."""

    key: int
    id: str
    documents: str  # "projects/P/databases/D/documents/"
    pruned: bool = False
    scratch: bool = False
    archive: Optional[str] = None  # the run's archive policy ("paths": no before-images)
    mode: str = "apply"


def encode(
    run: RunInfo, batch: int, records: Sequence[Any], next_blk: int, *, keep_parts: bool = True
) -> tuple[list[tuple], list[tuple[int, bytes]]]:
    """Rows (in COLUMNS order) and blocks ((blk, data), numbered from `next_blk`) for the
    records of one batch. A record has seq, kind, path, precondition (a Precondition or its
    JSON), before, write, after, group, label, status, reason and optionally
    commit_time, error and no_write (a record that never had a write: kept as such).
    Without `keep_parts` (a dry-run's scratch rows) nothing goes into blocks."""
    rows: list[tuple] = []
    blocks: list[tuple[int, bytes]] = []
    entries: list[bytes] = []
    used = 0
    for r in records:
        pre_time, pre_exists = encode_precondition(r.precondition)
        parts = _parts(run, r, pre_time, pre_exists) if keep_parts else None
        blk = None
        if parts is not None:
            entry = _entry(r.seq, parts)
            if entries and used + len(entry) > BLOCK_BYTES:
                blocks.append((next_blk, pack(entries)))
                next_blk, entries, used = next_blk + 1, [], 0
            entries.append(entry)
            used += len(entry)
            blk = next_blk
        rows.append(
            (
                run.key,
                r.seq,
                batch,
                r.kind,
                r.path,
                pre_time,
                pre_exists,
                r.group,
                encode_label(r.label, r.path),
                r.status,
                r.reason,
                encode_time(getattr(r, "commit_time", None)),
                getattr(r, "error", None),
                blk,
                path_hash(r.path),
            )
        )
    if entries:
        blocks.append((next_blk, pack(entries)))
    return rows, blocks


def _parts(run: RunInfo, r: Any, pre_time: Any, pre_exists: Optional[int]) -> Optional[Parts]:
    """What of a record goes into a block; None when nothing does."""
    # an empty image is no image; a run that keeps paths only never stores one, whoever
    # journals its operations
    before = None if run.archive == "paths" else r.before or None
    write = r.write
    no_write = bool(getattr(r, "no_write", False))
    if (
        write is not None
        and r.kind == DELETE
        and write == delete_write(run.documents + r.path, pre_time, pre_exists)
    ):
        write = None  # rebuilt when read
    after = r.after
    if after is not None and after == after_of(r.write, r.kind):
        after = None  # rendered from the write when read
    if before is None and write is None and after is None and not no_write:
        return None
    return Parts(before, write, after, no_write)


# ---- reading --------------------------------------------------------------------------------


class Blocks:
    """Decoded blocks, the last few kept (rows are read in order: one block at a time)."""

    def __init__(self, fetch: Any, keep: int = 4) -> None:
        self.fetch = fetch  # (run key, blk) -> block data or None
        self.keep = keep
        self.cache: dict[tuple[int, int], dict[int, Parts]] = {}

    def parts(self, run: int, blk: int, seq: int) -> Optional[Parts]:
        key = (run, blk)
        found = self.cache.get(key)
        if found is None:
            data = self.fetch(run, blk)
            found = unpack(data) if data is not None else {}
            if len(self.cache) >= self.keep:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = found
        return found.get(seq)


class OpRow(Mapping):
    """One operation as the readers (reports, audit, plan files, resume, restore) use it:
    the keys of the uncompressed layout, computed from the compact row on access."""

    __slots__ = ("_row", "_run", "_blocks")

    def __init__(self, row: Any, run: RunInfo, blocks: Blocks) -> None:
        self._row = row
        self._run = run
        self._blocks = blocks

    def __getitem__(self, key: str) -> Any:
        row = self._row
        if key in _PLAIN:
            return row[key]
        if key == "run_id":
            return self._run.id
        if key == "precondition":
            return decode_precondition(row["pre_time"], row["pre_exists"])
        if key == "label":
            return decode_label(row["label"], row["path"])
        if key == "commit_time":
            return decode_time(row["commit_time"])
        if key == "before":
            parts = self._parts()
            return parts.before if parts else None
        if key == "write":
            return self._write()
        if key == "after":
            parts = self._parts()
            if parts is not None and parts.after is not None:
                return parts.after
            return after_of(self._write(), row["kind"])
        raise KeyError(key)

    def precondition_value(self) -> Any:
        """`json.loads(self["precondition"])`, without the text (`precondition_value`)."""
        return precondition_value(self._row["pre_time"], self._row["pre_exists"])

    def _parts(self) -> Optional[Parts]:
        blk = self._row["blk"]
        if blk is None or self._run.pruned:
            return None
        return self._blocks.parts(self._run.key, blk, self._row["seq"])

    def _write(self) -> Optional[bytes]:
        if self._run.pruned or self._run.scratch:
            return None
        parts = self._parts()
        if parts is not None and (parts.write is not None or parts.no_write):
            return parts.write
        row = self._row
        if row["kind"] != DELETE:
            return None
        return delete_write(self._run.documents + row["path"], row["pre_time"], row["pre_exists"])

    def __iter__(self) -> Iterator[str]:
        return iter(KEYS)

    def __len__(self) -> int:
        return len(KEYS)

    def keys(self) -> Any:
        return list(KEYS)

    def __repr__(self) -> str:
        return f"OpRow({self._run.id!r}, {self._row['seq']}, {self._row['path']!r})"
