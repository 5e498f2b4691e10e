"""The only module that talks to Firestore (google.cloud.firestore).

Scans page through a collection ordered by document name, one bounded page at a time,
resuming after the last document seen, so memory stays flat whatever the collection size.
Commits are atomic, carry each operation's precondition, and are sent exactly once per
call: a commit that fails in a way that leaves its outcome unknown raises TransientError
and the runner re-reads to find out. Reads are retried with capped backoff for as long as
the store's patience lasts (`patience.Patience`: time without progress, not a count).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers, types
from google.cloud.firestore_v1.field_path import FieldPath
from proto.datetime_helpers import DatetimeWithNanoseconds

from fsmigrate.errors import (
    FirestoreError,
    FsMigrateError,
    IndexMissing,
    RequestTooLarge,
    SnapshotTooOld,
    TransientError,
    UsageError,
)
from fsmigrate.firestore.codec import decode_fields, to_timestamp
from fsmigrate.firestore.connection import EMULATOR_ENV, Channels, Connection
from fsmigrate.firestore.emulator import check_emulator_host
from fsmigrate.firestore.indexes import needed_index
from fsmigrate.firestore.patience import DEFAULT_PATIENCE, Patience
from fsmigrate.scripts.operations import (
    CREATE,
    DELETE,
    SET,
    UPDATE,
    Operation,
    Precondition,
    check_path,
)
from fsmigrate.times import parse_window

DEFAULT_DATABASE = "(default)"
MAX_PAGE = 10000
RESERVED_ROOT = "_fsmigrate"
INEQUALITIES = ("<", "<=", ">", ">=", "!=", "not-in")

# Errors a commit answers with when one of its preconditions did not hold.
PRECONDITION_ERRORS = (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists)
# How Firestore says a request is too big: the emulator's gRPC limit (RESOURCE_EXHAUSTED
# "gRPC message exceeds maximum size 4194304"), production's request limit (INVALID_ARGUMENT
# "Request payload size exceeds the limit"), a transaction with too many writes or index
# entries ("Transaction too big"). Never transient: retrying the same request cannot help.
TOO_LARGE = re.compile(
    r"exceeds maximum size|payload size exceeds|message larger than max|"
    r"transaction too big|request too large",
    re.IGNORECASE,
)
# Errors worth another try: the server or the network had a moment. Anything else
# (PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND of the database...) stops at once.
# How long Firestore keeps the versions a read at a past `read_time` needs: an hour, or
# seven days with point-in-time recovery (the emulator keeps seven days). A read older than
# what the database keeps is refused with FAILED_PRECONDITION "read_time is too old".
VERSIONS_KEPT = dt.timedelta(hours=1)
VERSIONS_KEPT_PITR = dt.timedelta(days=7)
TOO_OLD = re.compile(r"read_time.{0,20}too old|too old.{0,40}read.?time", re.IGNORECASE)
TRANSIENT_ERRORS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
)
# UNKNOWN: the status of an answer lost on the way. A read (an idempotent call) is asked
# again; a commit's outcome is unknown, as after a deadline: TransientError, and the caller
# re-reads its documents before it sends anything again (engine.commit).
READ_RETRIED = (*TRANSIENT_ERRORS, gexc.Unknown)


@dataclass(frozen=True)
class Target:
    project: str
    database: str = DEFAULT_DATABASE
    emulator_host: Optional[str] = None

    @property
    def is_emulator(self) -> bool:
        return bool(self.emulator_host)

    def describe(self) -> str:
        where = f"emulator {self.emulator_host}" if self.emulator_host else "Google Cloud"
        return f"project {self.project}, database {self.database} ({where})"


def target_from_env(project: Optional[str], database: Optional[str]) -> Target:
    project = (
        project or os.environ.get("FSMIGRATE_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    )
    host = os.environ.get("FIRESTORE_EMULATOR_HOST") or None
    check_emulator_host(host)  # before anything connects
    if not project:
        raise UsageError("no project: pass --project or set FSMIGRATE_PROJECT")
    return Target(project=project, database=database or DEFAULT_DATABASE, emulator_host=host)


class Doc:
    """A document read by a migration, kept as the raw `Document` protobuf the server sent.

    Fields are decoded on demand, and the archive is the protobuf itself, so the
    before-image is exactly what Firestore holds (no decode/encode round trip). It offers
    the snapshot interface scripts use: id, path, reference, update_time, get(), to_dict().
    """

    __slots__ = ("_pb", "_client", "_data")

    def __init__(self, pb: Any, client: Any) -> None:
        self._pb = pb
        self._client = client
        self._data: Optional[dict[str, Any]] = None

    @property
    def pb(self) -> Any:
        """The Document protobuf as Firestore sent it (its fields exactly, for the codec)."""
        return self._pb

    @property
    def name(self) -> str:
        return self._pb.name

    @property
    def id(self) -> str:
        return self._pb.name.rsplit("/", 1)[1]

    @property
    def path(self) -> str:
        return self._pb.name.split("/documents/", 1)[1]

    @property
    def reference(self) -> Any:
        return self._client.document(self.path)

    @property
    def exists(self) -> bool:
        return True

    @property
    def update_time(self) -> dt.datetime:
        return DatetimeWithNanoseconds.from_timestamp_pb(self._pb.update_time)

    @property
    def create_time(self) -> dt.datetime:
        return DatetimeWithNanoseconds.from_timestamp_pb(self._pb.create_time)

    def get(self, field: str, default: Any = None) -> Any:
        """The value at a dotted field path, or `default` when absent (decodes just it)."""
        fields = self._pb.fields
        parts = field.split(".")
        for i, part in enumerate(parts):
            if part not in fields:
                return default
            value = fields[part]
            if i == len(parts) - 1:
                return _helpers.decode_value(value, self._client)
            if value.WhichOneof("value_type") != "map_value":
                return default
            fields = value.map_value.fields
        return default

    def __getitem__(self, field: str) -> Any:
        return self.to_dict()[field]

    def __contains__(self, field: str) -> bool:
        return field in self._pb.fields

    def to_dict(self) -> dict[str, Any]:
        if self._data is None:
            self._data = decode_fields(self._pb.fields, self._client)
        return dict(self._data)

    def document_bytes(self) -> bytes:
        return self._pb.SerializeToString()

    def document_size(self) -> int:
        """len(document_bytes()), without serializing."""
        return self._pb.ByteSize()

    def __repr__(self) -> str:
        return f"Doc({self.path!r})"


@dataclass(frozen=True)
class Missing:
    """A document that does not exist but has subcollections (`Store.missing`). It stands
    where a `Doc` would in ctx.delete / ctx.rename: there is nothing of its own to write
    or archive, only what is under it."""

    path: str
    subcollections: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[1]

    @property
    def exists(self) -> bool:
        return False

    @property
    def update_time(self) -> None:
        return None

    def to_dict(self) -> dict:
        return {}

    def get(self, field: str, default: Any = None) -> Any:
        return default

    def __repr__(self) -> str:
        return f"Missing({self.path!r}, subcollections={list(self.subcollections)})"


@dataclass(frozen=True)
class RetryPolicy:
    """How long transient Firestore errors are retried (see `patience`), how fast, and the
    deadline of one call."""

    patience: float = DEFAULT_PATIENCE  # seconds without progress before giving up
    initial: float = 0.25  # seconds before the first retry of a call
    maximum: float = 10.0  # longest wait between two tries
    multiplier: float = 2.0
    timeout: float = 60.0  # deadline of one call
    stream_timeout: float = 600.0  # deadline of one scan stream (it resumes after it)

    @classmethod
    def from_env(cls, patience: Optional[float] = None) -> RetryPolicy:
        """`patience` (seconds), else FSMIGRATE_PATIENCE ('10m', '90s' or seconds), else 10
        minutes; FSMIGRATE_RETRY_INITIAL, FSMIGRATE_RETRY_MAX, FSMIGRATE_CALL_TIMEOUT,
        FSMIGRATE_STREAM_TIMEOUT override the other defaults (seconds)."""
        env = os.environ
        if patience is None:
            patience = parse_patience(env.get("FSMIGRATE_PATIENCE"), "FSMIGRATE_PATIENCE")
        try:
            return cls(
                patience=DEFAULT_PATIENCE if patience is None else patience,
                initial=float(env.get("FSMIGRATE_RETRY_INITIAL", cls.initial)),
                maximum=float(env.get("FSMIGRATE_RETRY_MAX", cls.maximum)),
                timeout=float(env.get("FSMIGRATE_CALL_TIMEOUT", cls.timeout)),
                stream_timeout=float(env.get("FSMIGRATE_STREAM_TIMEOUT", cls.stream_timeout)),
            )
        except ValueError as exc:
            raise UsageError(
                f"bad FSMIGRATE_RETRY_* / FSMIGRATE_CALL_TIMEOUT value: {exc}"
            ) from exc

    def budget(self) -> Patience:
        return Patience(
            self.patience, initial=self.initial, maximum=self.maximum, multiplier=self.multiplier
        )


def parse_patience(value: Union[str, float, None], where: str = "--patience") -> Optional[float]:
    """'10m', '90s', '1h' or a number of seconds -> seconds; None for None; UsageError
    (naming `where`) otherwise."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_window(text).total_seconds()
        except ValueError:
            seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"{where} {text!r} is not a positive duration like 10m, 90s or 1h")
    return seconds


class Store:
    """Reads and commits of one database (`target`), through `channels` (connection.py:
    the Firestore client's channel and the fast one). Without `channels`, the Store
    opens its own for `connection` (default: the environment's settings, and the
    target's emulator) and `close()` closes them; given ones are the caller's to close."""

    def __init__(
        self,
        target: Target,
        client: Any = None,
        policy: Optional[RetryPolicy] = None,
        *,
        connection: Optional[Connection] = None,
        channels: Optional[Channels] = None,
    ) -> None:
        self.target = target
        self.reserved_root = RESERVED_ROOT  # markers and lock: never part of user scans
        self.policy = policy or RetryPolicy.from_env()
        self.patience = self.policy.budget()
        # The lease's fence (None: no lease): called before each data commit and each
        # retry, it returns the seconds a write sent now may take (the commit's deadline
        # is cut to it) or raises when the run must not write any more (the lease lost).
        self.fence: Optional[Callable[[], float]] = None
        self._owns_channels = channels is None
        if channels is None:
            if connection is None:  # the variable wins over the target's, as ever
                emulator = os.environ.get(EMULATOR_ENV) or target.emulator_host
                connection = replace(Connection.from_environ(), emulator_host=emulator)
            channels = Channels(connection, target.project, target.database)
        self.channels = channels
        self.connection = channels.connection
        self.client = client if client is not None else channels.client
        # what the Firestore client names its database and sends with each call
        self.database_path = f"projects/{target.project}/databases/{target.database}"
        self.metadata: list[tuple[str, str]] = [
            ("google-cloud-resource-prefix", self.database_path)
        ]
        if self.connection.is_emulator:  # as the client does: the emulator's own "token"
            self.metadata.append(("authorization", "Bearer owner"))

    @property
    def api(self) -> Any:
        """The Firestore API (the client library's) the Store's reads and commits go
        through, on the fast channel (channel.py); opened when first used."""
        return self.channels.api

    def close(self) -> None:
        """Close the channels this Store opened (not ones it was given)."""
        if self._owns_channels:
            self.channels.close()

    # ---- errors and retries ----------------------------------------------------------

    @property
    def retries(self) -> int:
        """Transient failures retried so far (all threads)."""
        return self.patience.retries

    @property
    def last_retry_error(self) -> Optional[str]:
        return self.patience.last_error

    @property
    def waited(self) -> float:
        """Seconds spent failing without progress so far."""
        return self.patience.waited

    def backoff(self, what: str, attempt: int, exc: BaseException) -> None:
        """Sleep before the next try, or raise TransientError when the patience is spent
        (or the fence's error when the run must stop: a lost lease)."""
        self.patience.wait(what, attempt, exc, check=self.fence)

    def progressed(self) -> None:
        """Something read or written: the patience starts over."""
        self.patience.progressed()

    def _read(self, what: str, fn: Any, read_time: Optional[dt.datetime] = None) -> Any:
        """Run an idempotent read, retrying transient errors."""
        attempt = 0
        while True:
            try:
                found = fn()
            except READ_RETRIED as exc:
                self.backoff(what, attempt, exc)
                attempt += 1
                continue
            except gexc.GoogleAPICallError as exc:
                raise _read_error(what, exc, read_time) from exc
            self.progressed()
            return found

    # ---- reads ---------------------------------------------------------------------

    def scan(
        self,
        collection: str,
        *,
        page_size: Optional[int] = None,
        group: bool = False,
        where: Sequence[tuple[str, str, Any]] = (),
        partitions: int = 1,
        notice: Optional[Callable[[str], None]] = None,
        include_reserved: bool = False,
        start: Optional[str] = None,
        end: Optional[str] = None,
        read_time: Optional[dt.datetime] = None,
    ) -> Iterator[Doc]:
        """Yield every document of `collection` (or collection group), ordered by name.

        One streamed query, consumed as it arrives (flow control keeps memory flat); with
        `page_size`, a series of queries of that many documents instead. A stream that
        breaks or times out is reopened after the last document received, so a dropped
        connection gives neither duplicates nor gaps. (Not the client's own stream retry,
        which does not resume; and not small pages, which the emulator serves in time
        proportional to the offset.)

        `partitions` > 1 on an unfiltered collection group scan splits it with
        PartitionQuery and streams the parts in parallel (then the order is by part, not
        overall). A server without PartitionQuery (the emulator) gets one stream, and
        `notice` is told so.

        `read_time`: read the collection as it was then (every page and every reopened
        stream at that same instant).
        """
        if page_size is not None and not 1 <= page_size <= MAX_PAGE:
            raise UsageError(f"page_size must be between 1 and {MAX_PAGE}, got {page_size}")
        if not include_reserved:
            if not group and collection.split("/", 1)[0] == self.reserved_root:
                raise UsageError(
                    f"{collection!r} is fsmigrate's own (markers and lock), not user data"
                )
            if group:  # a collection group can reach into fsmigrate's own documents
                prefix = self.reserved_root + "/"
                docs = self.scan(
                    collection,
                    page_size=page_size,
                    group=True,
                    where=where,
                    partitions=partitions,
                    notice=notice,
                    include_reserved=True,
                    start=start,
                    end=end,
                    read_time=read_time,
                )
                yield from (d for d in docs if not d.path.startswith(prefix))
                return
        if group:
            if "/" in collection:
                raise UsageError(f"collection group id {collection!r} must not contain '/'")
            query = self.client.collection_group(collection)
        else:
            if not collection or collection.count("/") % 2:
                raise UsageError(f"{collection!r} is not a collection path")
            query = self.client.collection(collection)
        if partitions > 1 and group and not where and page_size is None and not (start or end):
            parts = self.partition_queries(collection, partitions, read_time=read_time)
            if parts is None:
                if notice:
                    notice(
                        f"scan of {collection}: this server does not support PartitionQuery "
                        "(the emulator does not); scanned in one stream"
                    )
            elif len(parts) > 1:
                yield from _merge(
                    [self._scan_query(q, collection, [], None, read_time) for q in parts]
                )
                return
        ordered: list[str] = []  # Firestore orders by inequality fields first, then the key
        for field, op, value in where:
            query = query.where(filter=firestore.FieldFilter(field, op, value))
            if op in INEQUALITIES and field not in ordered:
                ordered.append(field)
        for bound, op in ((start, ">="), (end, "<")):  # a range of document names
            if bound is not None:
                if ordered:
                    raise UsageError(
                        "a range of document names cannot be combined with inequality filters"
                    )
                query = query.where(
                    filter=firestore.FieldFilter(
                        FieldPath.document_id(), op, self.client.document(bound)
                    )
                )
        for field in ordered:
            query = query.order_by(field)
        query = query.order_by(FieldPath.document_id())
        if page_size is not None:
            query = query.limit(page_size)
        yield from self._scan_query(query, collection, ordered, page_size, read_time)

    def split(
        self,
        collection: str,
        parts: int,
        *,
        group: bool = False,
        where: Sequence[tuple[str, str, Any]] = (),
        read_time: Optional[dt.datetime] = None,
    ) -> tuple[list[str], int]:
        """(points, total): document paths that cut a scan into `parts` ranges of about
        the same size (each range starts at a point, inclusive, and ends before the next),
        and the number of documents. PartitionQuery where the server has it (a collection
        group, or a top-level collection as part of its group). Otherwise a COUNT, then
        one keys-only query per point that skips, on the server, from the point before to
        the next (`offset`): no name but the points comes to this process, and the
        documents skipped add up to one pass (Firestore bills a skipped document as a read,
        as it bills a keys-only pass; the emulator scans the collection for each query).
        `read_time`: the names as they were then."""
        if parts <= 1 or any(op in INEQUALITIES for _, op, _ in where):
            return [], self.count(collection, group=group, where=where, read_time=read_time)
        if not where and (group or "/" not in collection):
            # PartitionQuery samples split points from the index (no pass over the names);
            # a top-level collection is the part of its collection group directly under
            # the root (points in same-named subcollections elsewhere are dropped)
            cut = self._partition_points(collection, parts, read_time)
            if cut is not None and not group:
                cut = [p for p in cut if p.count("/") == 1 and p.startswith(collection + "/")]
            if cut:
                return cut, self.count(collection, group=group, where=where, read_time=read_time)
        total = self.count(collection, group=group, where=where, read_time=read_time)
        names = (
            self._filtered(collection, group, where)
            .select([FieldPath.document_id()])
            .order_by(FieldPath.document_id())
        )
        reserved = self.reserved_root + "/"
        points: list[str] = []
        at, last = 0, None  # the index and the path of the point before
        for n in range(1, parts):
            want = n * total // parts
            if want <= at:  # fewer names than parts: no empty range
                continue
            page = names if last is None else names.start_at({FieldPath.document_id(): last})
            page = page.offset(want - at).limit(1)
            found = self._read(
                f"split of {collection}",
                lambda page=page: list(self._stream(page, read_time)),
                read_time,
            )
            if not found:  # fewer names than counted: the collection changed meanwhile
                break
            at, last = want, self.client.document(found[0].path)
            if not found[0].path.startswith(reserved):
                points.append(found[0].path)
        return points, total

    def _filtered(self, collection: str, group: bool, where: Sequence[tuple[str, str, Any]]) -> Any:
        query = (
            self.client.collection_group(collection)
            if group
            else self.client.collection(collection)
        )
        for field, op, value in where:
            query = query.where(filter=firestore.FieldFilter(field, op, value))
        return query

    def count(
        self,
        collection: str,
        *,
        group: bool = False,
        where: Sequence[tuple[str, str, Any]] = (),
        read_time: Optional[dt.datetime] = None,
    ) -> int:
        """The number of documents a scan would read (a COUNT aggregation: no documents
        are transferred)."""
        query = self._filtered(collection, group, where)
        found = self._read(
            f"count of {collection}",
            lambda: query.count().get(retry=None, timeout=self.policy.timeout, read_time=read_time),
            read_time,
        )
        return int(found[0][0].value)

    def _partition_points(
        self, collection_id: str, parts: int, read_time: Optional[dt.datetime] = None
    ) -> Optional[list[str]]:
        found = self._partitions(collection_id, parts, read_time)
        if found is None:
            return None
        points = []
        for part in found[:-1]:
            cursor = part.end_at
            if isinstance(cursor, (list, tuple)):
                cursor = cursor[0] if cursor else None
            path = getattr(cursor, "path", None)
            if path:
                points.append(path)
        return points

    def partition_queries(
        self, collection_id: str, count: int, *, read_time: Optional[dt.datetime] = None
    ) -> Optional[list[Any]]:
        """Queries covering a collection group in up to `count` parts; None when the server
        does not implement PartitionQuery."""
        parts = self._partitions(collection_id, count, read_time)
        return None if parts is None else [part.query() for part in parts]

    def _partitions(
        self, collection_id: str, count: int, read_time: Optional[dt.datetime] = None
    ) -> Optional[list[Any]]:
        """PartitionQuery's parts of a collection group; None when the server does not
        implement it (the emulator)."""
        group = self.client.collection_group(collection_id)
        try:
            return self._read(
                f"partitioning of {collection_id}",
                lambda: list(
                    group.get_partitions(
                        count - 1, retry=None, timeout=self.policy.timeout, read_time=read_time
                    )
                ),
                read_time,
            )
        except FirestoreError as exc:
            if isinstance(exc.exc, gexc.MethodNotImplemented):
                return None
            raise

    def _scan_query(
        self,
        query: Any,
        what: str,
        ordered: list[str],
        page_size: Optional[int],
        read_time: Optional[dt.datetime] = None,
    ) -> Iterator[Doc]:
        last: Optional[Doc] = None
        failures = 0
        while True:
            page = (
                query
                if last is None
                else query.start_after(
                    {
                        **{f: last.get(f) for f in ordered},
                        FieldPath.document_id(): self.client.document(last.path),
                    }
                )
            )
            received = 0
            stream = self._stream(page, read_time)
            while True:
                try:
                    doc = next(stream)
                except StopIteration:
                    break
                except READ_RETRIED as exc:
                    self.backoff(f"scan of {what}", failures, exc)
                    failures += 1
                    received = -1  # reopen after `last`
                    break
                except gexc.GoogleAPICallError as exc:
                    raise _read_error(f"scan of {what}", exc, read_time) from exc
                failures = 0
                received += 1
                last = doc
                self.progressed()
                yield doc
            if received >= 0 and (page_size is None or received < page_size):
                self.progressed()
                return

    def _stream(self, query: Any, read_time: Optional[dt.datetime] = None) -> Iterator[Doc]:
        """One page as raw protobufs (the client's snapshots would decode every field).
        A consumer that stops early ends the stream."""
        # (a Query has no public way to its request: an internal, tests/test_library_internals.py)
        request, _, _ = query._prep_stream(retry=None, read_time=read_time)
        with contextlib.closing(self._run(request)) as found:  # stopped early: cancelled
            for pb in found:
                yield Doc(pb, self.client)

    def get(self, path: str, *, read_time: Optional[dt.datetime] = None) -> Optional[Doc]:
        problem = check_path(path)
        if problem:
            raise UsageError(problem)
        return self.get_many([path], read_time=read_time)[path]

    def get_many(
        self, paths: Iterable[str], *, read_time: Optional[dt.datetime] = None
    ) -> dict[str, Optional[Doc]]:
        """Read documents by path (one BatchGetDocuments call); None for missing ones.
        `read_time`: as they were then."""
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        return self._read(
            f"read of {len(paths)} documents", lambda: self._batch_get(paths, read_time), read_time
        )

    def peek(self, path: str) -> Optional[Doc]:
        """Read one document with a single try: TransientError at once when Firestore does
        not answer (for a check that must not wait, like a worker's look at the lease)."""
        try:
            found = self._batch_get([path])[path]
        except READ_RETRIED as exc:
            raise TransientError(f"read of {path}", exc) from exc
        except gexc.GoogleAPICallError as exc:
            raise FirestoreError(f"read of {path}", exc) from exc
        self.progressed()
        return found

    def _batch_get(
        self, paths: list[str], read_time: Optional[dt.datetime] = None
    ) -> dict[str, Optional[Doc]]:
        prefix = self.database_path + "/documents/"
        found: dict[str, Optional[Doc]] = {p: None for p in paths}
        request: dict[str, Any] = {
            "database": self.database_path,
            "documents": [prefix + p for p in paths],
        }
        if read_time is not None:
            request["read_time"] = read_time
        responses = self.api.batch_get_documents(
            request=request,
            metadata=self.metadata,
            retry=None,
            timeout=self.policy.timeout,
        )
        for response in responses:
            pb = types.BatchGetDocumentsResponse.pb(response)
            if pb.HasField("found"):
                doc = Doc(pb.found, self.client)
                found[doc.path] = doc
        return found

    def subcollections(self, path: str, *, read_time: Optional[dt.datetime] = None) -> list[str]:
        """Ids of the subcollections of the document at `path` (as they were at
        `read_time`)."""
        ref = self.client.document(path)
        return sorted(
            self._read(
                f"listing subcollections of {path}",
                lambda: [
                    c.id
                    for c in ref.collections(
                        retry=None, timeout=self.policy.timeout, read_time=read_time
                    )
                ],
                read_time,
            )
        )

    def names_from(
        self,
        start: str,
        *,
        after: bool = False,
        limit: int,
        read_time: Optional[dt.datetime] = None,
    ) -> list[str]:
        """Paths of the first `limit` documents of the whole database, at any depth, from
        `start` on (after it, with `after`), in name order: one keys-only kindless query
        (a document's subtree follows it directly, before its next sibling)."""
        request = _kindless(self.doc_name(""), read_time)
        query = request["structured_query"]
        query["select"] = {"fields": [{"field_path": "__name__"}]}
        op = "GREATER_THAN" if after else "GREATER_THAN_OR_EQUAL"
        query["where"] = _name_filter(op, self.doc_name(start))
        query["limit"] = limit
        cut = len(self.doc_name(""))
        return self._read(
            f"probe for subcollections from {start}",
            lambda: [pb.name[cut:] for pb in self._run(request)],
            read_time,
        )

    def descendants(self, path: str, *, read_time: Optional[dt.datetime] = None) -> Iterator[Doc]:
        """Every document under the document at `path`, at any depth, in name order (each
        before what is under it): one kindless all-descendants query with the document as
        its parent (as firebase's `firestore:delete -r` reads a subtree), streamed with
        flat memory and reopened after the last document received when it breaks."""
        last: Optional[str] = None
        failures = 0
        while True:
            request = _kindless(self.doc_name(path), read_time)
            if last is not None:
                request["structured_query"]["where"] = _name_filter(
                    "GREATER_THAN", self.doc_name(last)
                )
            stream = self._run(request)
            try:
                for pb in stream:
                    doc = Doc(pb, self.client)
                    failures = 0
                    last = doc.path
                    self.progressed()
                    yield doc
            except READ_RETRIED as exc:
                self.backoff(f"read of the subtree of {path}", failures, exc)
                failures += 1
                continue
            except gexc.GoogleAPICallError as exc:
                raise _read_error(f"read of the subtree of {path}", exc, read_time) from exc
            self.progressed()
            return

    def _run(self, request: Any) -> Generator[Any, None, None]:
        """The Document protobufs a RunQuery request answers, as they come; a consumer
        that stops early ends the stream."""
        responses = self.api.run_query(
            request=request,
            metadata=self.metadata,
            retry=None,
            timeout=self.policy.stream_timeout,
        )
        try:
            for response in responses:
                pb = types.RunQueryResponse.pb(response)
                if pb.HasField("document"):
                    yield pb.document
        finally:
            responses.cancel()  # nothing when the stream has ended

    def missing(
        self,
        collection: str,
        *,
        page_size: int = 1000,
        read_time: Optional[dt.datetime] = None,
    ) -> Iterator[Missing]:
        """The documents of `collection` that do not exist but have subcollections (left
        by a delete that did not cascade, or written by apps that only ever write
        subcollections), in name order, with their subcollections' ids. A scan cannot see
        them; ListDocuments with show_missing does (names only, page by page)."""
        if not collection or collection.count("/") % 2:
            raise UsageError(f"{collection!r} is not a collection path")
        if collection.split("/", 1)[0] == self.reserved_root:
            raise UsageError(f"{collection!r} is fsmigrate's own (markers and lock), not user data")
        parent, _, collection_id = collection.rpartition("/")
        base = self.database_path + "/documents"
        token = ""
        while True:
            request: dict[str, Any] = {
                "parent": f"{base}/{parent}" if parent else base,
                "collection_id": collection_id,
                "page_size": page_size,
                "page_token": token,
                "show_missing": True,
                "mask": {"field_paths": []},
            }
            if read_time is not None:
                request["read_time"] = read_time

            def page(request: dict[str, Any] = request) -> Any:
                pager = self.api.list_documents(
                    request=request,
                    metadata=self.metadata,
                    retry=None,
                    timeout=self.policy.timeout,
                )  # its first page only: the pager would fetch the next ones unretried
                return types.ListDocumentsResponse.pb(next(iter(pager.pages)))

            response = self._read(f"listing documents of {collection}", page, read_time)
            for pb in response.documents:
                if pb.HasField("create_time"):  # it exists: a scan yields it
                    continue
                path = pb.name.split("/documents/", 1)[1]
                names = self.subcollections(path, read_time=read_time)
                if names:
                    yield Missing(path, tuple(names))
            token = response.next_page_token
            if not token:
                return

    # ---- writes --------------------------------------------------------------------

    def doc_name(self, path: str) -> str:
        return f"{self.database_path}/documents/{path}"

    def build_write(self, op: Operation) -> bytes:
        """The serialized `Write` protobuf for `op`, precondition included. It is journaled
        before it is sent, and sent byte for byte (also when a crashed run is redone)."""
        if op.write is not None:
            return op.write
        name = self.doc_name(op.path)
        pre = op.precondition
        if op.fields is not None:  # archived protobuf fields (restore): written as they are
            write = types.Write.pb(types.Write(update=types.Document(name=name)))
            write.update.fields.MergeFrom(op.fields)
        elif op.kind == DELETE:
            write = _WRITE(delete=name)
        elif op.kind == CREATE:
            write = _pb(_helpers.pbs_for_create(name, dict(op.data or {}))[0])
        elif op.kind == SET:
            write = _pb(_helpers.pbs_for_set_no_merge(name, dict(op.data or {}))[0])
        else:
            write = _pb(_helpers.pbs_for_update(name, dict(op.data or {}), None)[0])
        write.ClearField("current_document")
        if pre.update_time is not None:
            write.current_document.update_time.CopyFrom(to_timestamp(pre.update_time))
        elif pre.exists is not None:
            write.current_document.exists = pre.exists
        elif op.kind == UPDATE:
            write.current_document.exists = True
        return write.SerializeToString()

    def commit_size(self, write_sizes: Iterable[int]) -> int:
        """The encoded size of a CommitRequest carrying writes of these sizes (what the
        server's request-size limit applies to)."""
        total = len(self.database_path) + 3
        for n in write_sizes:
            total += 1 + varint_len(n) + n
        return total

    def commit_writes(
        self, writes: Sequence[bytes], *, lease: Optional[float] = None
    ) -> dt.datetime:
        """Commit serialized writes atomically, once (no hidden retry). Precondition failures
        raise the api_core error as is, transient ones and UNKNOWN TransientError (the commit
        may or may not have landed: the caller re-reads), anything else FirestoreError.

        A data commit first asks the fence (the lease) how long a write may still take and
        gives the call no longer than that: it lands before the lease could expire, or not
        at all. A commit that lands is progress. `lease`: this is a write of the lease
        itself (or a marker), not fenced, with that deadline in seconds."""
        timeout = self.policy.timeout
        if lease is not None:
            timeout = min(timeout, lease)
        elif self.fence is not None:
            timeout = min(timeout, self.fence())
        request = types.CommitRequest.pb(types.CommitRequest(database=self.database_path))
        for raw in writes:
            request.writes.add().ParseFromString(raw)
        try:
            response = self.api.commit(
                request=types.CommitRequest.wrap(request),
                metadata=self.metadata,
                retry=None,
                timeout=timeout,
            )
        except PRECONDITION_ERRORS:
            raise
        except (gexc.ResourceExhausted, gexc.InvalidArgument) as exc:
            if TOO_LARGE.search(str(exc.message)):
                raise RequestTooLarge(
                    f"commit of {len(writes)} operations ({request.ByteSize():,} bytes)", exc
                ) from exc
            if isinstance(exc, gexc.InvalidArgument):
                raise FirestoreError(f"commit of {len(writes)} operations", exc) from exc
            raise TransientError(f"commit of {len(writes)} operations", exc) from exc
        except READ_RETRIED as exc:  # (UNKNOWN too) counted by the caller's backoff
            raise TransientError(f"commit of {len(writes)} operations", exc) from exc
        except gexc.GoogleAPICallError as exc:
            raise FirestoreError(f"commit of {len(writes)} operations", exc) from exc
        if lease is None:
            self.progressed()
        return DatetimeWithNanoseconds.from_timestamp_pb(
            types.CommitResponse.pb(response).commit_time
        )


def _read_error(what: str, exc: Any, read_time: Optional[dt.datetime]) -> FsMigrateError:
    """A read's failure: a read at a time older than the database keeps versions says so
    in one line; anything else is a FirestoreError."""
    message = str(getattr(exc, "message", exc))
    if read_time is not None and TOO_OLD.search(message):
        return SnapshotTooOld(read_time)
    if status_code(exc) == "FAILED_PRECONDITION" and "index" in message:
        return IndexMissing(what, exc, needed_index(message))
    if read_time is not None and "in the future" in message:
        return UsageError(
            f"read time {read_time.isoformat()} is ahead of Firestore's clock ({what}): "
            "check this machine's clock, or plan a moment in the past with --as-of 1m"
        )
    return FirestoreError(what, exc)


def _kindless(parent: str, read_time: Optional[dt.datetime]) -> dict[str, Any]:
    """A RunQuery request for every document under `parent` (a document's name, or the
    database's documents root), whatever its collection, in name order."""
    request: dict[str, Any] = {
        "parent": parent.rstrip("/"),
        "structured_query": {
            "from_": [{"all_descendants": True}],
            "order_by": [{"field": {"field_path": "__name__"}, "direction": "ASCENDING"}],
        },
    }
    if read_time is not None:
        request["read_time"] = read_time
    return request


def _name_filter(op: str, name: str) -> dict[str, Any]:
    return {
        "field_filter": {
            "field": {"field_path": "__name__"},
            "op": op,
            "value": {"reference_value": name},
        }
    }


def status_code(exc: BaseException) -> Optional[str]:
    """The gRPC status code name of a Firestore error ('RESOURCE_EXHAUSTED', ...), if any."""
    code = getattr(exc, "grpc_status_code", None)
    return getattr(code, "name", None)


def varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


_WRITE = types.Write.pb()


def _pb(message: Any) -> Any:
    """A write the client's helpers made, as a protobuf (they made proto-plus messages in
    some releases, protobufs in others)."""
    return types.Write.pb(message) if isinstance(message, types.Write) else message


class Leases:
    """The few single-document writes a lease (and a marker) needs, each guarded by a
    precondition. Retried like any write, within the store's patience; a renewal of the
    lease is retried only until its `deadline` instead (see engine.lease)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, path: str, data: dict) -> Optional[dt.datetime]:
        """Create `path`; its update time, or None when it already exists."""
        op = Operation(CREATE, path, data, Precondition(exists=False))
        return self._commit(lambda: op)

    def replace(
        self,
        path: str,
        data: Union[dict, Callable[[], dict]],
        update_time: dt.datetime,
        *,
        deadline: Optional[float] = None,
        stop: Optional[threading.Event] = None,
    ) -> Optional[dt.datetime]:
        """Overwrite `path` if it is still at `update_time`; the new update time or None.
        `data` is called for each try (a lease's body says when it expires). With
        `deadline` (a time.monotonic() value), no try is still on the wire after it: the
        last transient error is raised as TransientError when it comes (or as soon as
        `stop` is set)."""
        return self._commit(
            lambda: Operation(
                SET,
                path,
                data() if callable(data) else data,
                Precondition(update_time=update_time),
            ),
            deadline,
            stop,
        )

    def delete(
        self,
        path: str,
        update_time: Optional[dt.datetime] = None,
        *,
        deadline: Optional[float] = None,
    ) -> bool:
        pre = Precondition(update_time=update_time) if update_time else Precondition()
        op = Operation(DELETE, path, None, pre)
        return self._commit(lambda: op, deadline) is not None

    def _commit(
        self,
        make: Callable[[], Operation],
        deadline: Optional[float] = None,
        stop: Optional[threading.Event] = None,
    ) -> Optional[dt.datetime]:
        attempt = 0
        while True:
            op = make()
            try:
                if deadline is None:
                    return self.store.commit_writes([self.store.build_write(op)])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientError(
                        f"write of {op.path}", TimeoutError("no time left before the deadline")
                    )
                return self.store.commit_writes([self.store.build_write(op)], lease=left)
            except PRECONDITION_ERRORS:
                return None
            except TransientError as exc:
                # a lost answer: the next try meets its own write as a failed precondition,
                # so the caller re-reads the document to learn who holds it
                if deadline is None:
                    self.store.backoff(f"write of {op.path}", attempt, exc.exc)
                else:
                    pause = self.store.patience.delay(attempt)
                    if time.monotonic() + pause >= deadline:
                        raise
                    if stop is not None and stop.wait(pause):
                        raise
                    if stop is None:
                        time.sleep(pause)
                attempt += 1


_DONE = object()


def _merge(streams: list[Iterator[Doc]], buffer: int = 1000) -> Iterator[Doc]:
    """Run several scans on threads, yielding their documents as they come, with at most
    `buffer` waiting (memory stays flat). The first error of any part is raised."""
    out: queue.Queue = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        """Put `item` once there is room; False when the consumer has gone."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump(stream: Iterator[Doc]) -> None:
        try:
            for doc in stream:
                if not offer(doc):
                    return
            item: Any = _DONE
        except BaseException as exc:  # handed to the consumer
            item = exc
        offer(item)

    threads = [
        threading.Thread(target=pump, args=(s,), name=f"fsmigrate-scan-{i}", daemon=True)
        for i, s in enumerate(streams)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
