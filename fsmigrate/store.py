"""The only module that talks to Firestore (google.cloud.firestore).

Scans page through a collection ordered by document name, one bounded page at a time,
resuming after the last document seen, so memory stays flat whatever the collection size.
Commits are atomic WriteBatches carrying each operation's precondition.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence

from google.api_core import exceptions as gexc
from google.auth import exceptions as gauth_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers, types
from google.cloud.firestore_v1.field_path import FieldPath
from proto.datetime_helpers import DatetimeWithNanoseconds

from .errors import FirestoreError, UsageError
from .plan import CREATE, DELETE, SET, UPDATE, Operation, check_path

DEFAULT_DATABASE = "(default)"
MAX_PAGE = 1000
INEQUALITIES = ("<", "<=", ">", ">=", "!=", "not-in")

# Errors a commit answers with when one of its preconditions did not hold.
PRECONDITION_ERRORS = (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists)


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
    project = (project or os.environ.get("FSMIGRATE_PROJECT")
               or os.environ.get("GOOGLE_CLOUD_PROJECT"))
    if not project:
        raise UsageError("no project: pass --project or set FSMIGRATE_PROJECT")
    return Target(project=project, database=database or DEFAULT_DATABASE,
                  emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST") or None)


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
        self._data: Optional[dict] = None

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

    def to_dict(self) -> dict:
        if self._data is None:
            self._data = _helpers.decode_dict(self._pb.fields, self._client)
        return dict(self._data)

    def document(self) -> Any:
        """The document as a `types.Document` (full type fidelity)."""
        return types.Document.wrap(self._pb)

    def document_bytes(self) -> bytes:
        return self._pb.SerializeToString()

    def __repr__(self) -> str:
        return f"Doc({self.path!r})"


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except gexc.GoogleAPICallError as exc:
        raise FirestoreError(what, exc) from exc


class Store:
    def __init__(self, target: Target, client: Any = None) -> None:
        self.target = target
        if client is None:
            try:
                client = firestore.Client(project=target.project, database=target.database)
            except gauth_exceptions.DefaultCredentialsError as exc:
                raise UsageError(
                    f"no Google credentials for project {target.project}: run `gcloud auth "
                    "application-default login`, or set FIRESTORE_EMULATOR_HOST to use the "
                    "emulator") from exc
        self.client = client

    # ---- reads ---------------------------------------------------------------------

    def scan(self, collection: str, *, page_size: int = 500, group: bool = False,
             where: Sequence[tuple[str, str, Any]] = ()) -> Iterator[Doc]:
        """Yield every document of `collection` (or collection group), page by page."""
        if not 1 <= page_size <= MAX_PAGE:
            raise UsageError(f"page_size must be between 1 and {MAX_PAGE}, got {page_size}")
        if group:
            if "/" in collection:
                raise UsageError(f"collection group id {collection!r} must not contain '/'")
            query = self.client.collection_group(collection)
        else:
            if not collection or collection.count("/") % 2:
                raise UsageError(f"{collection!r} is not a collection path")
            query = self.client.collection(collection)
        ordered: list[str] = []  # Firestore orders by inequality fields first, then the key
        for field, op, value in where:
            query = query.where(filter=firestore.FieldFilter(field, op, value))
            if op in INEQUALITIES and field not in ordered:
                ordered.append(field)
        for field in ordered:
            query = query.order_by(field)
        query = query.order_by(FieldPath.document_id()).limit(page_size)
        last: Optional[Doc] = None
        while True:
            page = query if last is None else query.start_after(
                {**{f: last.get(f) for f in ordered},
                 FieldPath.document_id(): self.client.document(last.path)})
            docs = _call(f"scan of {collection}", self._run_query, page)
            for doc in docs:
                yield doc
            if len(docs) < page_size:
                return
            last = docs[-1]

    def _run_query(self, query: Any) -> list[Doc]:
        """One page, as raw protobufs (the client's snapshots would decode every field)."""
        request, _, kwargs = query._prep_stream(retry=None)
        responses = self.client._firestore_api.run_query(
            request=request, metadata=self.client._rpc_metadata, **kwargs)
        out = []
        for response in responses:
            pb = response._pb
            if pb.HasField("document"):
                out.append(Doc(pb.document, self.client))
        return out

    def get(self, path: str) -> Optional[Doc]:
        problem = check_path(path)
        if problem:
            raise UsageError(problem)
        return self.get_many([path])[path]

    def get_many(self, paths: Iterable[str]) -> dict[str, Optional[Doc]]:
        """Read documents by path (one BatchGetDocuments call); None for missing ones."""
        paths = list(dict.fromkeys(paths))
        found: dict[str, Optional[Doc]] = {p: None for p in paths}
        if not paths:
            return found
        prefix = self.client._database_string + "/documents/"

        def read() -> None:
            responses = self.client._firestore_api.batch_get_documents(
                request={"database": self.client._database_string,
                         "documents": [prefix + p for p in paths]},
                metadata=self.client._rpc_metadata)
            for response in responses:
                pb = response._pb
                if pb.HasField("found"):
                    doc = Doc(pb.found, self.client)
                    found[doc.path] = doc

        _call(f"read of {len(paths)} documents", read)
        return found

    # ---- writes --------------------------------------------------------------------

    def commit(self, ops: Sequence[Operation]) -> dt.datetime:
        """Commit `ops` atomically. Precondition failures raise the api_core error as is
        (the runner resolves them); anything else becomes FirestoreError."""
        batch = self.client.batch()
        for op in ops:
            ref = self.client.document(op.path)
            option = None
            if op.precondition.update_time is not None:
                option = self.client.write_option(last_update_time=op.precondition.update_time)
            elif op.precondition.exists is not None and op.kind != CREATE:
                option = self.client.write_option(exists=op.precondition.exists)
            if op.kind == DELETE:
                batch.delete(ref, option=option)
            elif op.kind == CREATE:
                batch.create(ref, dict(op.data or {}))
            elif op.kind == UPDATE:
                batch.update(ref, dict(op.data or {}), option=option)
            elif op.kind == SET:
                if option is None:
                    batch.set(ref, dict(op.data or {}))
                else:
                    # set with a precondition: the client's set() takes none, so write the
                    # same full-document update through update() with the option.
                    _set_with_option(batch, ref, dict(op.data or {}), option)
        try:
            batch.commit(retry=None)
        except PRECONDITION_ERRORS:
            raise
        except gexc.GoogleAPICallError as exc:
            raise FirestoreError(f"commit of {len(ops)} operations", exc) from exc
        return batch.commit_time


def _set_with_option(batch: Any, ref: Any, data: dict, option: Any) -> None:
    """Queue a full overwrite of `ref` guarded by `option` (exists / last_update_time)."""
    write_pbs = _helpers.pbs_for_set_no_merge(ref._document_path, data)
    for pb in write_pbs:
        option.modify_write(pb)
        break  # the precondition belongs on the first write (the document set)
    batch._add_write_pbs(write_pbs)
