"""Run migrations: ONE loop for dry-run and apply; only the write step differs.

The plan is consumed as a stream: operations are taken from the migration's generator
one batch at a time. A dry-run records each batch as `planned` in the state file and
writes nothing to Firestore. An apply records the batch (with before-images) as
`pending` BEFORE sending it, commits it atomically with its preconditions, and then
records the outcome. Batches are bounded by count and encoded bytes, atomic groups whole.
Committing and settling one batch (skips, reconciling unknown outcomes, splitting) is
`commit.Committer`; this module plans, batches, journals, and resumes.
"""
from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

from . import archive, codec, reconcile, testhooks
from .commit import Committer, Numbered, Settled
from .context import Barrier, Context
from .estimate import Tally, document_size, figures
from .errors import (FirestoreError, FsMigrateError, MigrationBlocked, MigrationFailed, PlanError,
                     ReconcileError, UsageError, WriteTooLarge)
from .plan import (DELETE, KINDS, MUST_NOT_EXIST, Archived, Group,
                   Operation, Precondition, check_operation)
from .scripts import Chain, Script
from .state import OpRecord, State, new_id
from .store import Store, _varint_len
from .traffic import Limiter, Limits, Ticket

MAX_BATCH = 500
# Commits are bounded by their encoded size too. The emulator refuses gRPC messages over
# 4 MiB (4,194,304 bytes), production Firestore requests over 10 MiB; Beam's Java FirestoreIO
# keeps production batches under 9.5 MiB. The default is safe on both.
DEFAULT_BATCH_BYTES = 4_000_000
MAX_BATCH_BYTES = 9_961_472  # 9.5 MiB
MIN_BATCH_BYTES = 16_384
_DELETE_SLACK = 32  # a delete's Write beyond its document name: precondition and framing
_READ_SLACK = 24    # what the precondition of a blind set adds once its document is read
MAX_CONCURRENCY = 16
DRY_RUN = "dry-run"
APPLY = "apply"

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


def _after_json(op: Operation, write: Optional[bytes]) -> Optional[str]:
    """What the operation writes, as JSON for people (from the journaled Write when sent)."""
    if op.kind == DELETE:
        return None
    if write is not None:
        pb = reconcile.parse_write(write)
        return codec.render_json(codec.fields_to_json(pb.update.fields))
    if op.fields is not None:
        return codec.render_json(codec.fields_to_json(op.fields))
    try:
        return codec.render_json(codec.fields_to_json(codec.encode_data(op.data or {})))
    except Exception:  # sentinels such as DELETE_FIELD have no value encoding
        return json.dumps({k: repr(v) for k, v in (op.data or {}).items()}, sort_keys=True)


def _batches(ops: Iterable[Any], size: int,
             weigh: Optional[Callable[[list[Operation]], int]] = None,
             max_bytes: Optional[int] = None,
             in_flight: int = 0) -> Iterator[tuple[list[Any], bool]]:
    """(batch, barrier): batches of at most `size` operations and, with `weigh` (the encoded
    bytes of a unit of operations), at most `max_bytes`; an atomic group is never split. A
    Barrier in the stream ends the batch early and asks the runner to let every batch
    before it land first. A document written again acts the same way: one commit cannot
    write a document twice (Firestore refuses it), and the second write must land after
    the first (it then meets its precondition, or is skipped as changed): the batch ends
    there with a barrier, when the first write is in it or in one of the `in_flight`
    batches before it that may still be on the wire."""
    batch: list[Any] = []
    paths: set[str] = set()
    recent: deque[set[str]] = deque(maxlen=in_flight)  # the batches that may still fly
    used = 0

    def cut(barrier: bool) -> tuple[list[Any], bool]:
        nonlocal batch, paths, used
        out = (batch, barrier)
        if barrier:
            recent.clear()
        elif in_flight:
            recent.append(paths)
        batch, paths, used = [], set(), 0
        return out

    for op in ops:
        if isinstance(op, Barrier):
            yield cut(True)
            continue
        unit = op.ops if isinstance(op, Group) else [op]  # a group is never split
        need = weigh(unit) if weigh is not None else 0
        touched = {p for p in (getattr(u, "path", None) for u in unit) if p is not None}
        if touched & paths or any(touched & earlier for earlier in recent):
            yield cut(True)
        elif batch and (len(batch) + len(unit) > size
                        or (max_bytes is not None and used + need > max_bytes)):
            yield cut(False)
        batch.extend(unit)
        paths |= touched
        used += need
        if len(batch) >= size:
            yield cut(False)
    if batch:
        yield batch, False


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    for batch, _ in _batches(items, size):
        yield batch


def read_before_blind_sets(store: Store, ops: list[Operation]) -> None:
    """Read what the blind sets among `ops` overwrite (their before-image) and guard each
    write with what was read (its update time, or "must not exist")."""
    blind = [op for op in ops if op.needs_read]
    if not blind:
        return
    current = store.get_many(op.path for op in blind)
    for op in blind:
        doc = current.get(op.path)
        op.before = doc
        op.precondition = (Precondition(update_time=doc.update_time) if doc
                           else MUST_NOT_EXIST)


def encoded_bytes(store: Store, op: Operation, build: Callable[[Operation], bytes]) -> int:
    """What `op` adds to a commit request (its Write, framed). A delete is sized without
    encoding it (its name plus a precondition); a blind set's precondition is only known
    once its document is read; any other write is built (by `build`) and kept."""
    if op.write is not None:
        n = len(op.write)
    elif op.kind == DELETE:
        n = len(store.doc_name(op.path).encode()) + _DELETE_SLACK
    elif op.needs_read:
        n = len(build(op)) + _READ_SLACK
    else:
        op.write = build(op)
        n = len(op.write)
    return 1 + _varint_len(n) + n


def reread_pending(store: Store, pending: list[Any], chunk: int
                   ) -> tuple[dict[tuple[str, int], str], dict[str, Any], set[tuple[str, Any]]]:
    """Journaled operations whose outcome is unknown, settled by re-reading their documents:
    the outcome of each ((run id, seq) -> reconcile.LANDED / NOT_SENT / CHANGED), the
    documents read, and the atomic groups ((run id, group)) broken by a changed member.
    An outcome that re-reading cannot tell stops with ReconcileError."""
    found: dict[tuple[str, int], str] = {}
    docs: dict[str, Any] = {}
    for rows in _chunks(pending, chunk):
        docs.update(store.get_many({r["path"] for r in rows}))
        for row in rows:
            outcome = reconcile.outcome(row["kind"], Precondition.from_json(
                row["precondition"]), row["write"], docs.get(row["path"]))
            if outcome == reconcile.UNKNOWN:
                raise ReconcileError(row["path"], row["kind"], row["run_id"])
            found[(row["run_id"], row["seq"])] = outcome
    broken = {(r["run_id"], r["grp"]) for r in pending if r["grp"] is not None
              and found[(r["run_id"], r["seq"])] == reconcile.CHANGED}
    return found, docs, broken


class _PlanFailed(Exception):
    """Wraps an exception raised by the migration's own code while planning."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc




class Runner:
    def __init__(self, store: Store, state: State, chain: Chain, *, batch_size: int = MAX_BATCH,
                 page_size: Optional[int] = None, progress: Optional[Progress] = None,
                 guard: Optional[Callable[[], None]] = None, concurrency: int = 1,
                 markers: Optional[Any] = None, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 limits: Optional[Limits] = None, traffic: Optional[Limiter] = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch_size}")
        if not MIN_BATCH_BYTES <= batch_bytes <= MAX_BATCH_BYTES:
            raise UsageError(f"--batch-bytes must be between {MIN_BATCH_BYTES} and "
                             f"{MAX_BATCH_BYTES}, got {batch_bytes}")
        self.batch_bytes = batch_bytes
        # what the writes of one commit may take: the request's own bytes come off the top
        self._payload_bytes = batch_bytes - store.commit_size(())
        self.committer = Committer(store, batch_bytes, traffic)
        self.limits = limits  # recorded with each run; the estimate's time is at these
        self.traffic = traffic  # the limiter every commit waits on (None: unlimited)
        self.distributor: Optional[Any] = None  # e.g. fsmigrate.beam's: plans on workers
        self.lease_holder: Optional[str] = None  # the lease workers check before commits
        self._ctx: Optional[Context] = None
        self._tally = Tally()
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, "
                             f"got {concurrency}")
        self.concurrency = concurrency
        self.markers = markers  # where applied revisions are recorded in the database
        self.capture_writes = False  # dry-runs journal exact writes (for --plan-out)
        self._policy = archive.DEFAULT  # what a run archives (set per run from its script)
        self._pool: Any = None
        self.store = store
        self.state = state
        self.chain = chain
        self.batch_size = batch_size
        self.page_size = page_size
        self.progress = progress or NoProgress()
        self.guard = guard or (lambda: None)  # raises when the run must stop (lock lost)
        self.target = store.target

    def pending(self, to: Optional[str] = None) -> list[Script]:
        applied = self.state.applied(self.target.project, self.target.database)
        return self.chain.pending(set(applied), to)

    def upgrade(self, *, dry_run: bool, to: Optional[str] = None) -> list[RunResult]:
        invocation = new_id()
        return [self.run(script, dry_run=dry_run, invocation=invocation)
                for script in self.pending(to)]

    # ---- one migration -------------------------------------------------------------

    def run(self, script: Script, *, dry_run: bool, invocation: str,
            kind: str = "upgrade", source: Optional[str] = None,
            plan_digest: Optional[str] = None) -> RunResult:
        """Plan (dry-run) or apply one migration. An apply first resumes an unfinished
        earlier apply of the same revision: it settles that run's in-flight operations by
        re-reading them, redoes the ones that never landed, and skips what committed."""
        mode = DRY_RUN if dry_run else APPLY
        prior = None if dry_run or kind == "restore" else self._unfinished(script)
        run_id = self.state.start_run(
            invocation=invocation, project=self.target.project, database=self.target.database,
            revision=script.revision, checksum=script.checksum, description=script.description,
            mode=mode, kind=kind, resumes=prior["id"] if prior else None, source=source,
            plan_digest=plan_digest)
        self._policy = archive.policy(script.archive)
        self.state.set_archive_policy(run_id, self._policy.name)
        result = RunResult(run_id, script.revision, script.description, mode, "running")
        counts = {k: 0 for k in KINDS}
        earlier = self.state.resume_chain(prior["id"]) if prior else []

        def note(text: str) -> None:
            self.state.add_note(run_id, len(result.notes), text)
            result.notes.append(text)

        self.progress.start(script, mode)
        self._tally, self._ctx, self._started = Tally(), None, time.monotonic()
        if self.traffic is not None:
            self.traffic.begin_run()
        self._seq = 0
        self.committer.splits = 0
        self._batch = 0
        self._group_ids = 0
        self._revision = script.revision
        try:
            self._run_checked(script, run_id, prior, earlier, dry_run, counts, note)
        finally:
            if self.committer.splits:
                note(f"{self.committer.splits} commit(s) refused by Firestore as too large "
                     f"were split and sent again (--batch-bytes {self.batch_bytes:,})")
        applies_revision = not dry_run and kind != "restore"
        if applies_revision and self.markers is not None:
            testhooks.reached("before-marker")
            try:  # the shared record first: a crash after it is completed from the marker
                self.markers.write(revision=script.revision, checksum=script.checksum,
                                   description=script.description, run_id=run_id, kind=kind,
                                   counts={k: v for k, v in counts.items() if v})
                testhooks.reached("after-marker")
            except FirestoreError as exc:
                self._fail(run_id, counts, exc, "firestore")
                raise
        self.state.finish_run(run_id, status="succeeded", counts=counts)
        self._record_retries(run_id)
        self._record_usage(run_id, dry_run, counts)
        applied = self.state.applied(self.target.project, self.target.database)
        if applies_revision and script.revision not in applied:
            self.state.mark_applied(project=self.target.project, database=self.target.database,
                                    revision=script.revision, checksum=script.checksum,
                                    run_id=run_id)
        elif applies_revision and applied[script.revision]["checksum"] != script.checksum:
            # a repeatable script's new version, run now: it is the one applied
            self.state.record_new_version(project=self.target.project,
                                          database=self.target.database,
                                          revision=script.revision,
                                          checksum=script.checksum, run_id=run_id)
        row = self.state.run(run_id)
        result.status = "succeeded"
        result.counts = counts
        result.planned, result.committed = row["planned"], row["committed"]
        result.skipped, result.batches = row["skipped"], row["batches"]
        return result

    def _run_body(self, script: Script, run_id: str, prior: Any, earlier: list[str],
                  dry_run: bool, counts: dict[str, int], note: Any) -> None:
        ctx = Context(self.store, script.revision, dry_run, self.page_size, note,
                      partitions=self.concurrency)
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                        thread_name_prefix="fsmigrate-commit")
        self._inflight: deque[tuple[str, int, Future]] = deque()
        try:
            redone: set[tuple[str, str]] = set()
            if prior is not None:
                if prior["status"] == "running":
                    self.state.mark_interrupted(prior["id"], run_id)
                note(f"resumes run {prior['id']} ({prior['status']}: {prior['error'] or ''})")
                redone = self._resume(run_id, earlier, counts)
            if self.distributor is not None:  # planned and applied by workers (Beam)
                done = self.state.committed_among_runs(earlier) | redone if earlier else set()
                self.distributor.run(self, script, run_id, dry_run=dry_run, counts=counts,
                                     note=note, done=done)
                return
            for batch, barrier in self._batched(self._operations(script, ctx)):
                if earlier:  # resuming: what already committed is not applied again
                    batch = self._not_done(batch, earlier, redone)
                self._run_batch(run_id, batch, counts, dry_run)
                if barrier:
                    self._settle_inflight(run_id, keep=0)
            self._settle_inflight(run_id, keep=0)
        except BaseException:
            self._settle_inflight(run_id, keep=0, quietly=True)  # record what did commit
            raise
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _run_checked(self, script: Script, run_id: str, prior: Any, earlier: list[str],
                     dry_run: bool, counts: dict[str, int], note: Any) -> None:
        """Plan and write; failures are recorded on the run with their kind."""
        try:
            self._run_body(script, run_id, prior, earlier, dry_run, counts, note)
        except _PlanFailed as wrapped:
            self._fail(run_id, counts, wrapped.exc, "migration")
            raise MigrationFailed(script.revision, run_id, wrapped.exc,
                                  self._committed(run_id)) from wrapped.exc
        except PlanError as exc:
            self._fail(run_id, counts, exc, "migration")
            raise
        except FirestoreError as exc:
            self._fail(run_id, counts, exc, "firestore")
            raise
        except (Exception, KeyboardInterrupt) as exc:
            self._fail(run_id, counts, exc, "error")
            raise
        finally:
            self.progress.finish()

    def _unfinished(self, script: Script) -> Optional[Any]:
        """The last apply of this revision, when it did not finish; refuses to go past a
        migration that raised unless its script changed since (the fix)."""
        last = self.state.last_apply(self.target.project, self.target.database, script.revision)
        if last is None or last["status"] == "succeeded":
            return None
        if (last["status"] == "failed" and last["error_kind"] == "migration"
                and last["checksum"] == script.checksum):
            raise MigrationBlocked(script.revision, last["id"], last["error"] or "")
        return last

    def _operations(self, script: Script, ctx: Context) -> Iterator[Operation]:
        """The migration's operations, checked one by one; its own errors are wrapped."""
        try:
            produced = script.plan(ctx)
            for op in produced or ():
                if isinstance(op, Barrier):
                    yield op
                elif isinstance(op, Group):
                    yield from self._groups(script.revision, op)
                else:
                    problem = check_operation(op)
                    if problem:
                        raise PlanError(script.revision, problem)
                    yield op
        except (FsMigrateError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _PlanFailed(exc) from exc

    def _groups(self, revision: str, group: Group) -> Iterator[Group]:
        """A group's children first, then the group; each checked and numbered."""
        for child in group.children:
            yield from self._groups(revision, child)
        if not group.ops:
            return
        if len(group.ops) > self.batch_size:
            raise PlanError(revision, f"an atomic group of {len(group.ops)} operations does "
                                      f"not fit in a batch of {self.batch_size}")
        self._group_ids += 1
        for op in group.ops:
            problem = check_operation(op)
            if problem:
                raise PlanError(revision, problem)
            op.group = self._group_ids
        yield group

    def _fail(self, run_id: str, counts: dict[str, int], exc: BaseException, kind: str) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.state.finish_run(run_id, status="failed", counts=counts, error=error,
                              error_kind=kind)
        self._record_retries(run_id)
        self._record_usage(run_id, self.state.run(run_id)["mode"] == DRY_RUN, counts)

    def _record_retries(self, run_id: str) -> None:
        if self.store.retries:
            self.state.record_retries(run_id, self.store.retries, self.store.last_retry_error)

    def _record_usage(self, run_id: str, dry_run: bool, counts: dict[str, int]) -> None:
        """The run's traffic (the limits, and what throttling did) and its estimate (a
        dry-run) or what it actually read, wrote and archived (an apply)."""
        reads = (self._ctx.reads if self._ctx is not None else 0) + self._tally.blind_reads
        if dry_run:
            done = counts
            traffic = self.limits.to_json() if self.limits is not None else None
        else:
            done = {kind: by_status.get("committed", 0)
                    for kind, by_status in self.state.op_counts(run_id).items()}
            traffic = (self.traffic.report() if self.traffic is not None
                       else self.limits.to_json() if self.limits is not None else None)
        usage = figures(reads=reads, counts=done, archive_bytes=self._tally.archive_bytes,
                        limits=self.limits)
        if not dry_run:
            usage["seconds"] = round(time.monotonic() - self._started, 3)
        self.state.record_usage(run_id, traffic=traffic, estimate=usage)

    def _committed(self, run_id: str) -> int:
        return int(self.state.run(run_id)["committed"])

    # ---- batches -------------------------------------------------------------------

    def _batched(self, ops: Iterable[Any]) -> Iterator[tuple[list[Any], bool]]:
        return _batches(ops, self.batch_size, self._unit_bytes, self._payload_bytes,
                        in_flight=self.concurrency - 1)

    def _unit_bytes(self, unit: list[Operation]) -> int:
        """The bytes a unit (one operation, or an atomic group) adds to a commit request;
        a unit that cannot fit in any commit is refused, naming its document."""
        total = sum(self._op_bytes(op) for op in unit)
        if total > self._payload_bytes:
            what = "write" if len(unit) == 1 else f"atomic group of {len(unit)} writes"
            raise WriteTooLarge(unit[0].path, self.store.commit_size(
                [total]) - 1 - _varint_len(total), self.batch_bytes, what)
        return total

    def _op_bytes(self, op: Operation) -> int:
        return encoded_bytes(self.store, op, self._write)

    def _run_batch(self, run_id: str, batch: list[Operation], counts: dict[str, int],
                   dry_run: bool) -> None:
        if not batch:
            return
        self._batch += 1
        numbered = list(enumerate(batch, self._seq))
        self._seq += len(batch)
        for op in batch:
            counts[op.kind] += 1
        blind = sum(op.needs_read for op in batch)
        if dry_run:
            # blind sets are read as the apply will read them: a reviewed plan guards them
            # like an apply, and the estimate counts what they will archive
            self._read_before_blind_sets(batch)
            self._record(run_id, self._batch, numbered, "planned")
        else:
            self._apply_batch(run_id, self._batch, numbered)
        self._tally.add(batch, blind, self._archived_size)
        self.progress.advance(len(batch))
        if self.traffic is not None and not dry_run:
            show_limit = getattr(self.progress, "limit", None)
            if show_limit is not None:
                show_limit(self.traffic.current())

    def _regroup(self, items: list[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Group):
                yield from self._groups(self._revision, item)
            else:
                yield item

    def _not_done(self, batch: list[Operation], earlier: list[str],
                  redone: set[tuple[str, str]]) -> list[Operation]:
        """A document the interrupted runs already wrote is not written again, whatever
        the plan now says of it (a re-plan of a changed document may differ: n + 1000
        again, or a delete where an update landed)."""
        done = self.state.committed_among(earlier, [op.path for op in batch]) | redone
        paths = {path for path, _ in done}
        return [op for op in batch if op.path not in paths]

    def _record(self, run_id: str, number: int, numbered: Numbered, status: str) -> None:
        keep = status != "planned" or self.capture_writes
        check = keep or self._policy.kind == archive.REDACT  # every dry-run runs redaction
        records = []
        for seq, op in numbered:
            write = self._write(op) if keep else None
            before = self._image(op) if check else None
            records.append(OpRecord(
                seq=seq, kind=op.kind, path=op.path, precondition=op.precondition,
                before=before if keep else None, after=None, status=status, write=write,
                group=op.group, label=op.label))
            op.write = write
        self.state.record_ops(run_id, number, records)

    def _archived_size(self, before: Any) -> int:
        """The bytes the run's archive policy keeps of a before-image (the estimate's
        archive_bytes): all of it, none ("paths"), or the redacted document."""
        if self._policy.kind == archive.FULL:
            return document_size(before)
        return len(self._policy.image(before) or b"")

    def _image(self, op: Operation) -> Optional[bytes]:
        """What the run's archive policy keeps of the document `op` changes (None: nothing);
        the migration's archive function failing stops the run like its plan failing."""
        try:
            return self._policy.image(op.before)
        except Exception as exc:
            raise _PlanFailed(RuntimeError(
                f"the archive function ({self._policy.name}) failed on {op.path}: "
                f"{type(exc).__name__}: {exc}")) from exc

    def _write(self, op: Operation) -> bytes:
        try:
            return self.store.build_write(op)
        except (TypeError, ValueError) as exc:
            raise PlanError(self._revision, f"{op.kind} of {op.path}: {exc}") from exc

    def _apply_batch(self, run_id: str, number: int, numbered: Numbered) -> None:
        """Journal the batch, then hand its commit to a commit thread, so the next batch is
        planned (and read, and archived) while this one is on the wire. At most
        `concurrency` batches are journaled and unsettled at any time. With a traffic
        limiter, the batch first waits for its slot, while the batches before it are still
        in flight: settling them and journaling this one then take none of the slot's time
        (the limiter counts from the slot, so such delays never add up)."""
        ticket = self.traffic.acquire(len(numbered)) if self.traffic is not None else None
        self._settle_inflight(run_id, keep=self.concurrency - 1)
        self.guard()
        self._read_before_blind_sets([op for _, op in numbered])
        self._record(run_id, number, numbered, "pending")  # write-ahead
        future = self._pool.submit(self._send, number, numbered, ticket)
        self._inflight.append((run_id, number, future))

    def _send(self, number: int, numbered: Numbered,
              ticket: Optional[Ticket] = None) -> tuple[Settled, Settled]:
        testhooks.reached("before-commit", number)
        outcome = self.committer.commit(numbered, ticket)
        testhooks.reached("after-commit", number)
        return outcome

    def _settle_inflight(self, run_id: str, keep: int, quietly: bool = False) -> None:
        """Record the outcome of the oldest in-flight batches until `keep` remain. With
        `quietly`, a batch whose commit failed is left `pending` (its outcome is unknown)
        and the others are still recorded."""
        while getattr(self, "_inflight", None) and len(self._inflight) > keep:
            owner, _, future = self._inflight.popleft()
            try:
                committed, skipped = future.result()
            except BaseException:
                if quietly:
                    continue
                self._settle_inflight(run_id, keep=0, quietly=True)
                raise
            self.state.settle_ops(owner, committed=committed, skipped=skipped)

    def _read_before_blind_sets(self, ops: list[Operation]) -> None:
        read_before_blind_sets(self.store, ops)

    # ---- resuming ------------------------------------------------------------------

    def _resume(self, run_id: str, earlier: list[str], counts: dict[str, int]
                ) -> set[tuple[str, str]]:
        """Settle the earlier runs' in-flight operations by re-reading their documents; the
        ones that never landed are redone (the same journaled write) in this run. The
        operations of an atomic group are settled together: if one changed, none is redone."""
        pending = self.state.pending_ops(earlier)
        found, docs, broken = reread_pending(self.store, pending, self.batch_size)
        updates = []
        redo: list[Any] = []
        groups: dict[tuple[str, int], Group] = {}
        for row in pending:
            pre = Precondition.from_json(row["precondition"])
            outcome = found[(row["run_id"], row["seq"])]
            key = (row["run_id"], row["grp"])
            if outcome == reconcile.LANDED:
                updates.append(("committed", "landed before the interruption (re-read)",
                                row["seq"], row["run_id"]))
            elif outcome == reconcile.CHANGED or key in broken:
                why = pre.why_not(docs.get(row["path"])) if outcome == reconcile.CHANGED \
                    else "its atomic group was skipped (changed since plan)"
                updates.append(("skipped", why, row["seq"], row["run_id"]))
            else:
                updates.append(("failed", f"not applied before the interruption; redone "
                                f"by run {run_id}", row["seq"], row["run_id"]))
                op = Operation(row["kind"], row["path"], precondition=pre,
                               before=Archived(row["path"], row["before"]),
                               write=row["write"], label=row["label"])
                if row["grp"] is None:
                    redo.append(op)
                elif key in groups:
                    groups[key].ops.append(op)
                else:
                    groups[key] = Group([op])
                    redo.append(groups[key])
        if updates:
            self.state.settle_old(updates)
        flat: list[Operation] = []
        for batch, _ in self._batched(self._regroup(redo)):
            self._run_batch(run_id, batch, counts, dry_run=False)
            flat.extend(batch)
        self._settle_inflight(run_id, keep=0)
        redo = flat
        return {(op.path, op.kind) for op in redo}
