"""Run migrations: ONE loop for dry-run and apply; only the write step differs.

The plan is consumed as a stream: operations are taken from the migration's generator
one batch at a time. A dry-run records each batch as `planned` in the state file and
writes nothing to Firestore. An apply records the batch (with before-images) as
`pending` BEFORE sending it, commits it atomically with its preconditions, and then
records the outcome. A precondition failure never clobbers: the batch's documents are
re-read, the operations whose document changed or vanished are marked skipped, and the
rest of the batch is committed without them.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, Union

from . import codec
from .errors import FirestoreError, FsMigrateError, MigrationFailed, PlanError, UsageError
from .plan import (CREATE, DELETE, KINDS, MUST_NOT_EXIST, SET, UPDATE, Operation, Precondition,
                   check_operation, timestamp_text)
from .scripts import Chain, Script
from .state import OpRecord, State, new_id
from .store import PRECONDITION_ERRORS, Doc, Store

MAX_BATCH = 500
DRY_RUN = "dry-run"
APPLY = "apply"

PathLike = Union[str, Doc, Any]


class Progress(Protocol):
    def start(self, script: Script, mode: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, script: Script, mode: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class RunResult:
    run_id: str
    revision: str
    description: str
    mode: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    planned: int = 0
    committed: int = 0
    skipped: int = 0
    batches: int = 0
    notes: list[str] = field(default_factory=list)
    error: Optional[str] = None


class Context:
    """What a migration's plan(ctx) gets: reads, operation constructors, notes."""

    def __init__(self, store: Store, revision: str, dry_run: bool, page_size: int,
                 note: Any) -> None:
        self._store = store
        self.revision = revision
        self.dry_run = dry_run
        self.project = store.target.project
        self.database = store.target.database
        self._page_size = page_size
        self._note = note

    # reads
    def scan(self, collection: str, *, page_size: Optional[int] = None, group: bool = False,
             where: Sequence[tuple[str, str, Any]] = ()) -> Iterator[Doc]:
        return self._store.scan(collection, page_size=page_size or self._page_size,
                                group=group, where=where)

    def get(self, path: str) -> Optional[Doc]:
        return self._store.get(_path_of(path))

    # operations
    def delete(self, doc: Doc) -> Operation:
        return Operation(DELETE, doc.path, None, _guard(doc, "delete"), doc)

    def update(self, doc: Doc, fields: Mapping[str, Any]) -> Operation:
        return Operation(UPDATE, doc.path, dict(fields), _guard(doc, "update"), doc)

    def set(self, target: PathLike, data: Mapping[str, Any]) -> Operation:
        """Overwrite a document. From a snapshot: guarded by its update_time. From a path:
        the runner reads the document just before writing, archives and guards it."""
        if isinstance(target, Doc):
            return Operation(SET, target.path, dict(data), _guard(target, "set"), target)
        return Operation(SET, _path_of(target), dict(data))

    def create(self, path: PathLike, data: Mapping[str, Any]) -> Operation:
        return Operation(CREATE, _path_of(path), dict(data), MUST_NOT_EXIST)

    def note(self, text: str) -> None:
        """Flag something for the report (e.g. documents left alone and why)."""
        self._note(str(text))


def _guard(doc: Any, what: str) -> Precondition:
    if not isinstance(doc, Doc):
        raise TypeError(f"ctx.{what}() takes a document from ctx.scan()/ctx.get(), "
                        f"got {type(doc).__name__}")
    return Precondition(update_time=doc.update_time)


def _path_of(target: PathLike) -> str:
    if isinstance(target, str):
        return target
    path = getattr(target, "path", None)
    if isinstance(path, str):
        return path
    raise TypeError(f"expected a document path, got {type(target).__name__}")


def _after_json(op: Operation) -> Optional[str]:
    if op.data is None:
        return None
    try:
        return codec.render_json(codec.fields_to_json(codec.encode_data(op.data)))
    except Exception:  # sentinels such as DELETE_FIELD have no value encoding
        return json.dumps({k: repr(v) for k, v in op.data.items()}, sort_keys=True)


def _batches(ops: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for op in ops:
        batch.append(op)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _PlanFailed(Exception):
    """Wraps an exception raised by the migration's own code while planning."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Runner:
    def __init__(self, store: Store, state: State, chain: Chain, *, batch_size: int = MAX_BATCH,
                 page_size: int = 500, progress: Optional[Progress] = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch_size}")
        self.store = store
        self.state = state
        self.chain = chain
        self.batch_size = batch_size
        self.page_size = page_size
        self.progress = progress or NoProgress()
        self.target = store.target

    def pending(self, to: Optional[str] = None) -> list[Script]:
        applied = self.state.applied(self.target.project, self.target.database)
        return self.chain.pending(set(applied), to)

    def upgrade(self, *, dry_run: bool, to: Optional[str] = None) -> list[RunResult]:
        invocation = new_id()
        results = []
        for script in self.pending(to):
            result = self.run(script, dry_run=dry_run, invocation=invocation)
            results.append(result)
        return results

    # ---- one migration -------------------------------------------------------------

    def run(self, script: Script, *, dry_run: bool, invocation: str) -> RunResult:
        mode = DRY_RUN if dry_run else APPLY
        run_id = self.state.start_run(
            invocation=invocation, project=self.target.project, database=self.target.database,
            revision=script.revision, checksum=script.checksum,
            description=script.description, mode=mode)
        result = RunResult(run_id, script.revision, script.description, mode, "running")
        counts = {kind: 0 for kind in KINDS}

        def note(text: str) -> None:
            self.state.add_note(run_id, len(result.notes), text)
            result.notes.append(text)

        ctx = Context(self.store, script.revision, dry_run, self.page_size, note)
        self.progress.start(script, mode)
        seq = 0
        try:
            for number, batch in enumerate(_batches(self._operations(script, ctx), self.batch_size), 1):
                numbered = list(enumerate(batch, seq))
                seq += len(batch)
                for op in batch:
                    counts[op.kind] += 1
                if dry_run:
                    self._record(run_id, number, numbered, "planned")
                else:
                    self._apply_batch(run_id, number, numbered)
                self.progress.advance(len(batch))
        except _PlanFailed as wrapped:
            self._fail(run_id, counts, wrapped.exc)
            raise MigrationFailed(script.revision, run_id, wrapped.exc,
                                  self._committed(run_id)) from wrapped.exc
        except (Exception, KeyboardInterrupt) as exc:
            self._fail(run_id, counts, exc)
            raise
        finally:
            self.progress.finish()
        self.state.finish_run(run_id, status="succeeded", counts=counts)
        if not dry_run and script.revision not in self.state.applied(self.target.project,
                                                                     self.target.database):
            self.state.mark_applied(project=self.target.project, database=self.target.database,
                                    revision=script.revision, checksum=script.checksum,
                                    run_id=run_id)
        row = self.state.run(run_id)
        result.status = "succeeded"
        result.counts = counts
        result.planned, result.committed = row["planned"], row["committed"]
        result.skipped, result.batches = row["skipped"], row["batches"]
        return result

    def _operations(self, script: Script, ctx: Context) -> Iterator[Operation]:
        """The migration's operations, checked one by one; its own errors are wrapped."""
        try:
            produced = script.plan(ctx)
            for op in produced or ():
                problem = check_operation(op)
                if problem:
                    raise PlanError(script.revision, problem)
                yield op
        except (FsMigrateError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _PlanFailed(exc) from exc

    def _fail(self, run_id: str, counts: dict[str, int], exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.state.finish_run(run_id, status="failed", counts=counts, error=error)

    def _committed(self, run_id: str) -> int:
        return int(self.state.run(run_id)["committed"])

    # ---- writing -------------------------------------------------------------------

    def _record(self, run_id: str, number: int, numbered: list[tuple[int, Operation]],
                status: str) -> None:
        archive = status != "planned"
        self.state.record_ops(run_id, number, [
            OpRecord(seq=seq, kind=op.kind, path=op.path,
                     precondition=op.precondition.to_json(),
                     before=op.before.document_bytes() if archive and op.before else None,
                     after=_after_json(op), status=status)
            for seq, op in numbered])

    def _apply_batch(self, run_id: str, number: int,
                     numbered: list[tuple[int, Operation]]) -> None:
        self._read_before_blind_sets([op for _, op in numbered])
        self._record(run_id, number, numbered, "pending")  # write-ahead
        try:
            committed, skipped = self._commit(numbered)
        except FirestoreError as exc:
            self.state.settle_ops(run_id, committed=[], failed=[
                (seq, str(exc)) for seq, _ in numbered])
            raise
        self.state.settle_ops(run_id, committed=committed, skipped=skipped)

    def _read_before_blind_sets(self, ops: list[Operation]) -> None:
        blind = [op for op in ops if op.needs_read]
        if not blind:
            return
        current = self.store.get_many(op.path for op in blind)
        for op in blind:
            doc = current.get(op.path)
            op.before = doc
            op.precondition = (Precondition(update_time=doc.update_time) if doc
                               else MUST_NOT_EXIST)

    def _commit(self, numbered: list[tuple[int, Operation]]
                ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """Commit what still holds; returns ((seq, commit time) committed, (seq, why) skipped)."""
        remaining = list(numbered)
        skipped: list[tuple[int, str]] = []
        for _ in range(3):
            if not remaining:
                return [], skipped
            try:
                when = timestamp_text(self.store.commit([op for _, op in remaining]))
                return [(seq, when) for seq, _ in remaining], skipped
            except PRECONDITION_ERRORS:
                current = self.store.get_many({op.path for _, op in remaining})
                stale = {seq: op.precondition.why_not(current.get(op.path))
                         for seq, op in remaining
                         if not op.precondition.holds_for(current.get(op.path))}
                if not stale:
                    break
                skipped += sorted(stale.items())
                remaining = [(seq, op) for seq, op in remaining if seq not in stale]
        committed, more = self._bisect(remaining)
        return committed, skipped + more

    def _bisect(self, numbered: list[tuple[int, Operation]]
                ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """Last resort when a re-read cannot tell which operation fails: halve and retry."""
        try:
            when = timestamp_text(self.store.commit([op for _, op in numbered]))
            return [(seq, when) for seq, _ in numbered], []
        except PRECONDITION_ERRORS as exc:
            if len(numbered) == 1:
                return [], [(numbered[0][0], f"precondition failed: {exc.message}")]
        half = len(numbered) // 2
        left = self._bisect(numbered[:half])
        right = self._bisect(numbered[half:])
        return left[0] + right[0], left[1] + right[1]
