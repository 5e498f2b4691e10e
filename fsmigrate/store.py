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
from google.cloud.firestore_v1.field_path import FieldPath

from . import codec
from .errors import FirestoreError, UsageError
from .plan import CREATE, DELETE, SET, UPDATE, Operation, check_path

DEFAULT_DATABASE = "(default)"
MAX_PAGE = 1000

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
    """A document read by a migration: the snapshot interface scripts use."""

    __slots__ = ("_snap",)

    def __init__(self, snap: Any) -> None:
        self._snap = snap

    @property
    def id(self) -> str:
        return self._snap.id

    @property
    def path(self) -> str:
        return self._snap.reference.path

    @property
    def reference(self) -> Any:
        return self._snap.reference

    @property
    def update_time(self) -> Optional[dt.datetime]:
        return self._snap.update_time

    @property
    def create_time(self) -> Optional[dt.datetime]:
        return self._snap.create_time

    def get(self, field: str, default: Any = None) -> Any:
        data = self._snap._data or {}
        node: Any = data
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def __getitem__(self, field: str) -> Any:
        return self._snap.to_dict()[field]

    def to_dict(self) -> dict:
        return self._snap.to_dict() or {}

    def document(self) -> Any:
        """The document as a `types.Document` protobuf (full type fidelity)."""
        snap = self._snap
        return codec.make_document(snap.reference._document_path,
                                   codec.encode_data(snap._data or {}),
                                   snap.create_time, snap.update_time)

    def document_bytes(self) -> bytes:
        return codec.document_to_bytes(self.document())

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
        for field, op, value in where:
            query = query.where(filter=firestore.FieldFilter(field, op, value))
        query = query.order_by(FieldPath.document_id()).limit(page_size)
        last = None
        while True:
            page = query.start_after(last) if last is not None else query
            snaps = _call(f"scan of {collection}", lambda: list(page.stream(retry=None)))
            for snap in snaps:
                yield Doc(snap)
            if len(snaps) < page_size:
                return
            last = snaps[-1]

    def get(self, path: str) -> Optional[Doc]:
        problem = check_path(path)
        if problem:
            raise UsageError(problem)
        snap = _call(f"read of {path}", self.client.document(path).get)
        return Doc(snap) if snap.exists else None

    def get_many(self, paths: Iterable[str]) -> dict[str, Optional[Doc]]:
        refs = [self.client.document(p) for p in paths]
        found: dict[str, Optional[Doc]] = {ref.path: None for ref in refs}
        if refs:
            for snap in _call("read", lambda: list(self.client.get_all(refs))):
                if snap.exists:
                    found[snap.reference.path] = Doc(snap)
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
    from google.cloud.firestore_v1 import _helpers

    write_pbs = _helpers.pbs_for_set_no_merge(ref._document_path, data)
    for pb in write_pbs:
        option.modify_write(pb)
        break  # the precondition belongs on the first write (the document set)
    batch._add_write_pbs(write_pbs)
