"""Run migrations: ONE loop for dry-run and apply; only the write step differs.

The plan is consumed as a stream: operations are taken from the migration's generator
one batch at a time. A dry-run records each batch as `planned` in the state file and
writes nothing to Firestore. An apply records the batch (with before-images) as
`pending` BEFORE sending it, commits it atomically with its preconditions, and then
records the outcome. Batches are cut by `batching`; committing and settling one batch
(skips, reconciling unknown outcomes, splitting) is `commit.Committer`; what lives for
one run is a `run.Run`. The local loop is this module's `Runner.distribute`; a Beam run
hands the same `Run` to its coordinator instead (`run.Distributor`).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

from fsmigrate.engine import hooks as run_hooks
from fsmigrate.engine import reconcile, testhooks, tracing
from fsmigrate.engine.batching import (
    DEFAULT_BATCH_BYTES,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MIN_BATCH_BYTES,
    batches,
    encoded_bytes,
    read_before_blind_sets,
    refuse_parents,
)
from fsmigrate.engine.commit import Committer, Numbered, Settled
from fsmigrate.engine.control import Controller
from fsmigrate.engine.estimate import document_size, figures
from fsmigrate.engine.lease import DEFAULT_TTL, Lease
from fsmigrate.engine.run import (
    APPLY,
    DRY_RUN,
    Distributor,
    Done,
    NoProgress,
    Progress,
    Run,
    RunSettings,
    ScriptRaised,
)
from fsmigrate.engine.settle import reread_pending
from fsmigrate.engine.traffic import Limiter, Limits, Ticket
from fsmigrate.errors import (
    FirestoreError,
    FsMigrateError,
    MigrationBlocked,
    MigrationFailed,
    PlanError,
    RunStopped,
    UsageError,
    WriteTooLarge,
)
from fsmigrate.firestore.patience import Waiting, format_seconds
from fsmigrate.firestore.store import Store, varint_len
from fsmigrate.scripts import archive
from fsmigrate.scripts.context import Barrier, Context
from fsmigrate.scripts.loader import Chain, Script
from fsmigrate.scripts.operations import (
    Archived,
    Group,
    Operation,
    Precondition,
    check_operation,
    parse_timestamp,
)
from fsmigrate.state.database import OpRecord, State, new_id
from fsmigrate.state.runs import RunResult
from fsmigrate.times import rfc3339
from fsmigrate.words import plural

__all__ = [
    "APPLY",
    "DEFAULT_BATCH_BYTES",
    "DRY_RUN",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_CONCURRENCY",
    "MIN_BATCH_BYTES",
    "NoProgress",
    "Progress",
    "Run",
    "Runner",
]

MAX_CONCURRENCY = 16


def snapshot_now() -> dt.datetime:
    """This instant as a plan's read time: UTC, whole microseconds (what Firestore takes)."""
    return dt.datetime.now(dt.timezone.utc)


class _InFlight:
    """The batches of one run handed to commit threads and not yet settled."""

    def __init__(self, concurrency: int) -> None:
        self.pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="fsmigrate-commit"
        )
        self.batches: deque[tuple[str, int, Future]] = deque()


class Runner:
    """Runs migrations against one target; the local `Distributor` (plans and commits in
    this process, `concurrency` commit threads), unless another one is given."""

    def __init__(
        self,
        store: Store,
        state: State,
        chain: Chain,
        *,
        batch_size: int = MAX_BATCH,
        page_size: Optional[int] = None,
        progress: Optional[Progress] = None,
        guard: Optional[Callable[[], None]] = None,
        concurrency: int = 1,
        markers: Optional[Any] = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        limits: Optional[Limits] = None,
        traffic: Optional[Limiter] = None,
        capture_writes: bool = False,
        distributor: Optional[Distributor] = None,
        lease_holder: Optional[str] = None,
        lease_ttl: float = DEFAULT_TTL,
        lease: Optional[Lease] = None,
        as_of: Optional[dt.datetime] = None,
        control: Optional[Controller] = None,
        hooks: Optional[run_hooks.Hooks] = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch_size}")
        if not MIN_BATCH_BYTES <= batch_bytes <= MAX_BATCH_BYTES:
            raise UsageError(
                f"--batch-bytes must be between {MIN_BATCH_BYTES} and "
                f"{MAX_BATCH_BYTES}, got {batch_bytes}"
            )
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise UsageError(
                f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}"
            )
        self.settings = RunSettings(
            batch_size=batch_size,
            batch_bytes=batch_bytes,
            concurrency=concurrency,
            capture_writes=capture_writes,
            lease_holder=lease_holder,
            lease_ttl=lease_ttl,
            lease=lease,
        )
        # what the writes of one commit may take: the request's own bytes come off the top
        self._payload_bytes = batch_bytes - store.commit_size(())
        self.committer = Committer(store, batch_bytes, traffic)
        self.limits = limits  # recorded with each run; the estimate's time is at these
        self.traffic = traffic  # the limiter every commit waits on (None: unlimited)
        self.distributor: Distributor = distributor or self
        self.markers = markers  # where applied revisions are recorded in the database
        self.store = store
        self.state = state
        self.chain = chain
        self.page_size = page_size
        self.progress = progress or NoProgress()
        self.guard = guard or (lambda: None)  # raises when the run must stop (lock lost)
        self.target = store.target
        self.control = control  # pause / resume / rate / stop from elsewhere (applies)
        self.hooks = hooks or run_hooks.Hooks()
        self.hook_problems: list[str] = []  # hooks that failed or hung, for the report
        self.as_of = as_of  # every plan reads at this instant (default: when it starts)
        store.patience.listener = self._waiting
        # retries and waits already recorded with a run: each goes with the run it happened
        # in, or with the next one (the lease's acquisition, before the first run)
        self._retries_counted = 0
        self._waited_counted = 0.0

    def _waiting(self, waiting: Optional[Waiting]) -> None:
        """The store waits for Firestore (or makes progress again): the progress says so."""
        show = getattr(self.progress, "waiting", None)
        if show is not None:
            show(waiting.message() if waiting is not None else None)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def batch_bytes(self) -> int:
        return self.settings.batch_bytes

    def pending(self, to: Optional[str] = None) -> list[Script]:
        applied = self.state.applied(self.target.project, self.target.database)
        return self.chain.pending(set(applied), to)

    def upgrade(self, *, dry_run: bool, to: Optional[str] = None) -> list[RunResult]:
        invocation = new_id()
        return [
            self.run(script, dry_run=dry_run, invocation=invocation) for script in self.pending(to)
        ]

    # ---- one migration -------------------------------------------------------------

    def run(
        self,
        script: Script,
        *,
        dry_run: bool,
        invocation: str,
        kind: str = "upgrade",
        source: Optional[str] = None,
        plan_digest: Optional[str] = None,
        read_time: Optional[str] = None,
    ) -> RunResult:
        """Plan (dry-run) or apply one migration. An apply first resumes an unfinished
        earlier apply of the same revision: it settles that run's in-flight operations by
        re-reading them, redoes the ones that never landed, and skips what committed.

        Every read of the plan is made at one instant (its snapshot): the runner's
        `as_of`, or the moment the plan starts. A reviewed plan's apply (`kind="plan"`)
        reads nothing to plan: it records `read_time`, the instant its plan read at."""
        with tracing.span(
            "fsmigrate.migration",
            revision=script.revision,
            mode=DRY_RUN if dry_run else APPLY,
            kind=kind,
            invocation=invocation,
        ) as span:
            result = self._run(
                script,
                span,
                dry_run=dry_run,
                invocation=invocation,
                kind=kind,
                source=source,
                plan_digest=plan_digest,
                read_time=read_time,
            )
            self._trace_result(span, result)
            return result

    def _run(
        self,
        script: Script,
        span: tracing.Span,
        *,
        dry_run: bool,
        invocation: str,
        kind: str,
        source: Optional[str],
        plan_digest: Optional[str],
        read_time: Optional[str],
    ) -> RunResult:
        mode = DRY_RUN if dry_run else APPLY
        replay = kind == "plan"  # a reviewed plan's writes: nothing is read to plan them
        snapshot = (
            (parse_timestamp(read_time) if read_time else None)
            if replay
            else self.as_of or snapshot_now()
        )
        prior = None if dry_run or kind == "restore" else self._unfinished(script)
        run_id = self.state.start_run(
            invocation=invocation,
            project=self.target.project,
            database=self.target.database,
            revision=script.revision,
            checksum=script.checksum,
            description=script.description,
            mode=mode,
            kind=kind,
            resumes=prior["id"] if prior else None,
            source=source,
            plan_digest=plan_digest,
            read_time=rfc3339(snapshot) if snapshot is not None else None,
        )
        policy = archive.policy(script.archive)
        self.state.set_archive_policy(run_id, policy.name)
        run = Run(
            run_id=run_id,
            script=script,
            dry_run=dry_run,
            store=self.store,
            state=self.state,
            committer=self.committer,
            progress=self.progress,
            settings=self.settings,
            limits=self.limits,
            traffic=None if dry_run else self.traffic,
            policy=policy,
            retries_before=self._retries_counted,
            waited_before=self._waited_counted,
            read_time=None if replay else snapshot,
            span=span,
        )
        span.set(run_id=run_id)
        earlier = self.state.resume_chain(prior["id"]) if prior else []
        self.progress.start(script, mode)
        expect = getattr(self.progress, "expect", None)
        if script.expected_ops is not None and expect is not None:
            expect(script.expected_ops, "op")  # a plan's or a restore's: known before
        if self.traffic is not None:
            self.traffic.begin_run()
        self.committer.splits = 0
        self._notify(run, run_hooks.START)
        try:
            self._run_checked(run, prior, earlier)
        except FsMigrateError as exc:
            span.set(**self._trace_counts(run.run_id))
            if isinstance(exc, RunStopped):
                span.set(stopped=exc.why)
            raise
        finally:
            if self.committer.splits:
                run.note(
                    f"{plural(self.committer.splits, 'commit')} refused by Firestore as too large "
                    f"were split and sent again (--batch-bytes {self.batch_bytes:,})"
                )
        applies_revision = not dry_run and kind != "restore"
        if applies_revision and self.markers is not None:
            testhooks.reached("before-marker")
            try:  # the shared record first: a crash after it is completed from the marker
                self.markers.write(
                    revision=script.revision,
                    checksum=script.checksum,
                    description=script.description,
                    run_id=run_id,
                    kind=kind,
                    counts={k: v for k, v in run.counts.items() if v},
                )
                testhooks.reached("after-marker")
            except FirestoreError as exc:
                self._fail(run, exc, "firestore")
                raise
        self.state.finish_run(run_id, status="succeeded", counts=run.counts)
        self._record_retries(run)
        self._record_usage(run)
        self._mark_applied(script, run_id, applies_revision)
        self._notify(run, run_hooks.FINISH)
        return RunResult.from_row(self.state, self.state.run(run_id))

    def _notify(self, run: Run, event: str) -> None:
        """Call the hooks with the run's record; a hook that failed or hung is a note on
        the run and a warning of the command, never a change of its outcome."""
        if not self.hooks.hooks and not self.hooks.pending_problems:
            return
        record = RunResult.from_row(self.state, self.state.run(run.run_id)).to_json()
        for problem in self.hooks.call(event, record):
            text = problem.describe()
            run.note(text)
            self.hook_problems.append(f"run {run.run_id}: {text}")

    def _set_rate(self, run: Run, rate: float) -> None:
        """`fsmigrate control rate N`: the run's new cap (a limiter is made when the run
        had none: the emulator without --max-rate)."""
        if self.traffic is None:
            self.traffic = Limiter(Limits())
            self.traffic.begin_run()
            self.committer.traffic = self.traffic
        run.traffic = self.traffic
        self.traffic.set_cap(rate)
        self.limits = self.traffic.limits
        run.limits = self.limits

    def _trace_counts(self, run_id: str) -> dict[str, Any]:
        row = self.state.run(run_id)
        return {
            "planned": row["planned"],
            "committed": row["committed"],
            "skipped": row["skipped"],
            "failed": row["failed"],
            "batches": row["batches"],
            "status": row["status"],
        }

    def _trace_result(self, span: tracing.Span, result: RunResult) -> None:
        span.set(**self._trace_counts(result.run_id), retries=result.retries)
        actual = result.actual or result.estimate or {}
        span.set(
            reads=actual.get("reads"),
            archive_bytes=actual.get("archive_bytes"),
            seconds=actual.get("seconds"),
        )
        traffic = result.traffic or {}
        span.set(
            throttle_events=traffic.get("throttle_events"),
            throttle_waited_seconds=traffic.get("waited_seconds"),
            lowest_rate=traffic.get("lowest_rate"),
        )

    def _mark_applied(self, script: Script, run_id: str, applies_revision: bool) -> None:
        if not applies_revision:
            return
        target = self.target
        applied = self.state.applied(target.project, target.database)
        if script.revision not in applied:
            self.state.mark_applied(
                project=target.project,
                database=target.database,
                revision=script.revision,
                checksum=script.checksum,
                run_id=run_id,
            )
        elif applied[script.revision]["checksum"] != script.checksum:
            # a repeatable script's new version, run now: it is the one applied
            self.state.record_new_version(
                project=target.project,
                database=target.database,
                revision=script.revision,
                checksum=script.checksum,
                run_id=run_id,
            )

    def _run_checked(self, run: Run, prior: Any, earlier: list[str]) -> None:
        """Resume what an interrupted run left, then plan and write through the
        distributor; failures are recorded on the run with their kind."""
        try:
            if self.control is not None and not run.dry_run:
                run.control = self.control
                self.control.begin(run, lambda rate: self._set_rate(run, rate))
            if prior is not None:
                if prior["status"] == "running":
                    self.state.mark_interrupted(prior["id"], run.run_id)
                run.note(f"resumes run {prior['id']} ({prior['status']}: {prior['error'] or ''})")
                run.earlier = earlier
                run.redone = self._resume(run, earlier)
            self.distributor.distribute(run)
        except RunStopped as exc:
            self.state.finish_run(
                run.run_id, status="stopped", counts=run.counts, error=exc.why, error_kind="stopped"
            )
            self._record_retries(run)
            self._record_usage(run)
            self._notify(run, run_hooks.STOP)
            raise
        except ScriptRaised as wrapped:
            self._fail(run, wrapped.exc, "migration")
            raise MigrationFailed(
                run.revision, run.run_id, wrapped.exc, self._committed(run.run_id)
            ) from wrapped.exc
        except PlanError as exc:
            self._fail(run, exc, "migration")
            raise
        except FirestoreError as exc:
            self._fail(run, exc, "firestore")
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Interrupted)
            self._fail(run, exc, "interrupted", status="interrupted")
            raise
        except Exception as exc:
            self._fail(run, exc, "error")
            raise
        finally:
            self.progress.finish()

    # ---- the local distributor -----------------------------------------------------

    def check(self, script: Script) -> None:
        """Every script runs locally."""

    def distribute(self, run: Run) -> None:
        """Plan and write in this process: batches journaled, then committed by up to
        `concurrency` commit threads while the next batch is planned."""
        run.context = Context(
            self.store,
            run.revision,
            run.dry_run,
            self.page_size,
            run.note,
            partitions=self.settings.concurrency,
            read_time=run.read_time,
            max_group=self.settings.batch_size,
            progress=self.progress,
        )
        flight = _InFlight(self.settings.concurrency)
        try:
            for batch, barrier in self._batched(run, self._operations(run, run.context)):
                if run.earlier:  # resuming: what already committed is not applied again
                    written = run.written_before([op.path for op in batch])
                    batch = [op for op in batch if op.path not in written]
                self._run_batch(run, flight, batch)
                if barrier:
                    self._settle_inflight(flight, keep=0)
            self._settle_inflight(flight, keep=0)
        except BaseException:
            self._settle_inflight(flight, keep=0, quietly=True)  # record what did commit
            raise
        finally:
            flight.pool.shutdown(wait=True)

    def _unfinished(self, script: Script) -> Optional[Any]:
        """The last apply of this revision, when it did not finish; refuses to go past a
        migration that raised unless its script changed since (the fix)."""
        last = self.state.last_apply(self.target.project, self.target.database, script.revision)
        if last is None or last["status"] == "succeeded":
            return None
        if (
            last["status"] == "failed"
            and last["error_kind"] == "migration"
            and last["checksum"] == script.checksum
        ):
            raise MigrationBlocked(script.revision, last["id"], last["error"] or "")
        return last

    def _operations(self, run: Run, ctx: Context) -> Iterator[Any]:
        """The migration's operations, checked one by one; its own errors are wrapped."""
        try:
            produced = run.script.plan(ctx)
            for op in produced or ():
                if isinstance(op, Barrier):
                    yield op
                elif isinstance(op, Group):
                    yield from self._groups(run, op)
                else:
                    problem = check_operation(op)
                    if problem:
                        raise PlanError(run.revision, problem)
                    yield op
        except (FsMigrateError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise ScriptRaised(exc) from exc

    def _groups(self, run: Run, group: Group) -> Iterator[Group]:
        """A group's children first, then the group; each checked and numbered."""
        for child in group.children:
            yield from self._groups(run, child)
        if not group.ops:
            return
        if len(group.ops) > self.batch_size:
            raise PlanError(
                run.revision,
                f"an atomic group of {len(group.ops)} operations "
                f"does not fit in a batch of {self.batch_size}",
            )
        run.groups += 1
        for op in group.ops:
            problem = check_operation(op)
            if problem:
                raise PlanError(run.revision, problem)
            op.group = run.groups
        yield group

    def _fail(self, run: Run, exc: BaseException, kind: str, status: str = "failed") -> None:
        if isinstance(exc, KeyboardInterrupt):
            error = f"{exc}" if str(exc) else "stopped by SIGINT (Ctrl-C)"
            error += "; the same command resumes it"
        else:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.state.finish_run(
            run.run_id, status=status, counts=run.counts, error=error, error_kind=kind
        )
        self._record_retries(run)
        self._record_usage(run)
        self._notify(run, run_hooks.FAIL)

    def _record_retries(self, run: Run) -> None:
        """The run's retries and, when it waited for Firestore, a note of how long."""
        self._retries_counted = self.store.retries
        self._waited_counted = self.store.waited
        if run.retries:
            self.state.record_retries(run.run_id, run.retries, self.store.last_retry_error)
        if run.waited >= 1.0:
            run.note(
                f"waited {format_seconds(run.waited)} for Firestore without progress "
                f"({run.retries} retries; patience {format_seconds(self.store.policy.patience)})"
            )

    def _record_usage(self, run: Run) -> None:
        """The run's traffic (the limits, and what throttling did) and its estimate (a
        dry-run) or what it actually read, wrote and archived (an apply)."""
        if run.dry_run:
            done = run.counts
            traffic = self.limits.to_json() if self.limits is not None else None
        else:
            done = {
                kind: by_status.get("committed", 0)
                for kind, by_status in self.state.op_counts(run.run_id).items()
            }
            traffic = (
                self.traffic.report()
                if self.traffic is not None
                else self.limits.to_json()
                if self.limits is not None
                else None
            )
        usage = figures(
            reads=run.reads, counts=done, archive_bytes=run.tally.archive_bytes, limits=self.limits
        )
        if not run.dry_run:
            usage["seconds"] = round(run.elapsed(), 3)
            usage["waited_seconds"] = round(run.waited, 3)
        self.state.record_usage(run.run_id, traffic=traffic, estimate=usage)

    def _committed(self, run_id: str) -> int:
        return int(self.state.run(run_id)["committed"])

    # ---- batches -------------------------------------------------------------------

    def _batched(self, run: Run, ops: Iterable[Any]) -> Iterator[tuple[list[Any], bool]]:
        return batches(
            ops,
            self.batch_size,
            lambda unit: self._unit_bytes(run, unit),
            self._payload_bytes,
            in_flight=self.settings.concurrency - 1,
        )

    def _unit_bytes(self, run: Run, unit: list[Operation]) -> int:
        """The bytes a unit (one operation, or an atomic group) adds to a commit request;
        a unit that cannot fit in any commit is refused, naming its document."""
        total = sum(encoded_bytes(self.store, op, lambda o: self._write(run, o)) for op in unit)
        if total > self._payload_bytes:
            what = "write" if len(unit) == 1 else f"atomic group of {len(unit)} writes"
            raise WriteTooLarge(
                unit[0].path,
                self.store.commit_size([total]) - 1 - varint_len(total),
                self.batch_bytes,
                what,
            )
        return total

    def _run_batch(self, run: Run, flight: _InFlight, batch: list[Operation]) -> None:
        batch = refuse_parents(self.store, batch, run.note, run.read_time)
        if not batch:
            return
        if run.control is not None:  # a batch boundary: pause, rate, stop take effect here
            run.control.checkpoint(run, lambda: self._settle_inflight(flight, keep=0))
        number, base = run.next_batch(len(batch))
        numbered = list(enumerate(batch, base))
        for op in batch:
            run.counts[op.kind] += 1
        blind = sum(op.needs_read for op in batch)
        if run.dry_run:
            # blind sets are read as the apply will read them: a reviewed plan guards them
            # like an apply, and the estimate counts what they will archive
            read_before_blind_sets(self.store, batch)
            self._record(run, number, numbered, "planned")
        else:
            self._apply_batch(run, flight, number, numbered)
        run.tally.add(batch, blind, lambda before: self._archived_size(run, before))
        self.progress.advance(len(batch))
        if self.traffic is not None and not run.dry_run:
            show_limit = getattr(self.progress, "limit", None)
            if show_limit is not None:
                show_limit(self.traffic.current())

    def _regroup(self, run: Run, items: list[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Group):
                yield from self._groups(run, item)
            else:
                yield item

    def _record(self, run: Run, number: int, numbered: Numbered, status: str) -> None:
        keep = status != "planned" or self.settings.capture_writes
        check = keep or run.policy.kind == archive.REDACT  # every dry-run runs redaction
        records = []
        for seq, op in numbered:
            write = self._write(run, op) if keep else None
            before = self._image(run, op) if check else None
            records.append(
                OpRecord(
                    seq=seq,
                    kind=op.kind,
                    path=op.path,
                    precondition=op.precondition,
                    before=before if keep else None,
                    after=None,
                    status=status,
                    write=write,
                    group=op.group,
                    label=op.label,
                )
            )
            op.write = write
        self.state.record_ops(run.run_id, number, records)

    def _archived_size(self, run: Run, before: Any) -> int:
        """The bytes the run's archive policy keeps of a before-image (the estimate's
        archive_bytes): all of it, none ("paths"), or the redacted document."""
        if run.policy.kind == archive.FULL:
            return document_size(before)
        return len(run.policy.image(before) or b"")

    def _image(self, run: Run, op: Operation) -> Optional[bytes]:
        """What the run's archive policy keeps of the document `op` changes (None: nothing);
        the migration's archive function failing stops the run like its plan failing."""
        try:
            return run.policy.image(op.before)
        except Exception as exc:
            raise ScriptRaised(
                RuntimeError(
                    f"the archive function ({run.policy.name}) failed on {op.path}: "
                    f"{type(exc).__name__}: {exc}"
                )
            ) from exc

    def _write(self, run: Run, op: Operation) -> bytes:
        try:
            return self.store.build_write(op)
        except (TypeError, ValueError) as exc:
            raise PlanError(run.revision, f"{op.kind} of {op.path}: {exc}") from exc

    def _apply_batch(self, run: Run, flight: _InFlight, number: int, numbered: Numbered) -> None:
        """Journal the batch, then hand its commit to a commit thread, so the next batch is
        planned (and read, and archived) while this one is on the wire. At most
        `concurrency` batches are journaled and unsettled at any time. With a traffic
        limiter, the batch first waits for its slot, while the batches before it are still
        in flight: settling them and journaling this one then take none of the slot's time
        (the limiter counts from the slot, so such delays never add up)."""
        ticket = self.traffic.acquire(len(numbered)) if self.traffic is not None else None
        self._settle_inflight(flight, keep=self.settings.concurrency - 1)
        self.guard()
        read_before_blind_sets(self.store, [op for _, op in numbered])
        self._record(run, number, numbered, "pending")  # write-ahead
        future = flight.pool.submit(self._send, number, numbered, ticket, run.span)
        flight.batches.append((run.run_id, number, future))

    def _send(
        self,
        number: int,
        numbered: Numbered,
        ticket: Optional[Ticket] = None,
        parent: Optional[tracing.Span] = None,
    ) -> tuple[Settled, Settled]:
        with tracing.span(
            "fsmigrate.commit",
            parent,
            batch=number,
            operations=len(numbered),
            bytes=sum(len(op.write or b"") for _, op in numbered),
        ) as span:
            retries, splits = self.store.retries, self.committer.splits
            testhooks.reached("before-commit", number)
            outcome = self.committer.commit(numbered, ticket)
            testhooks.reached("after-commit", number)
            span.set(
                committed=len(outcome[0]),
                skipped=len(outcome[1]),
                retries=self.store.retries - retries,  # (of every commit thread meanwhile)
                splits=self.committer.splits - splits,
                limit_ops_per_s=self.traffic.current() if self.traffic is not None else None,
            )
            return outcome

    def _settle_inflight(self, flight: _InFlight, keep: int, quietly: bool = False) -> None:
        """Record the outcome of the oldest in-flight batches until `keep` remain. With
        `quietly`, a batch whose commit failed is left `pending` (its outcome is unknown)
        and the others are still recorded."""
        while len(flight.batches) > keep:
            owner, _, future = flight.batches.popleft()
            try:
                committed, skipped = future.result()
            except BaseException:
                if quietly:
                    continue
                self._settle_inflight(flight, keep=0, quietly=True)
                raise
            self.state.settle_ops(owner, committed=committed, skipped=skipped)
            if self.control is not None:
                self.control.settled(len(committed), len(skipped))

    # ---- resuming ------------------------------------------------------------------

    def _resume(self, run: Run, earlier: list[str]) -> Done:
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
                updates.append(
                    (
                        "committed",
                        "landed before the interruption (re-read)",
                        row["seq"],
                        row["run_id"],
                    )
                )
            elif outcome == reconcile.CHANGED or key in broken:
                why = (
                    pre.why_not(docs.get(row["path"]))
                    if outcome == reconcile.CHANGED
                    else "its atomic group was skipped (changed since plan)"
                )
                updates.append(("skipped", why, row["seq"], row["run_id"]))
            else:
                updates.append(
                    (
                        "failed",
                        f"not applied before the interruption; redone by run {run.run_id}",
                        row["seq"],
                        row["run_id"],
                    )
                )
                op = Operation(
                    row["kind"],
                    row["path"],
                    precondition=pre,
                    before=Archived(row["path"], row["before"]),
                    write=row["write"],
                    label=row["label"],
                )
                if row["grp"] is None:
                    redo.append(op)
                elif key in groups:
                    groups[key].ops.append(op)
                else:
                    groups[key] = Group([op])
                    redo.append(groups[key])
        if updates:
            self.state.settle_old(updates)
        flight = _InFlight(self.settings.concurrency)
        flat: list[Operation] = []
        try:
            for batch, _ in self._batched(run, self._regroup(run, redo)):
                self._run_batch(run, flight, batch)
                flat.extend(batch)
            self._settle_inflight(flight, keep=0)
        except BaseException:
            self._settle_inflight(flight, keep=0, quietly=True)  # record what did commit
            raise
        finally:
            flight.pool.shutdown(wait=True)
        return {(op.path, op.kind) for op in flat}
