"""The coordinator's side of a Beam run: split, run the pipeline, import the journal.

`BeamDistributor` is a `fsmigrate.engine.run.Distributor`: the Runner hands it the `Run`
in place of its local loop, after the lease is taken, drift checked, markers adopted and
an interrupted earlier run settled; the Runner then records the run, writes the marker and
releases the lease as for a local run. The journal is imported whether the pipeline succeeded or failed, so what committed
is recorded either way; a batch a dead worker left without an outcome stays `pending`
and the next run settles it by re-reading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fsmigrate.beam import journal, staging, workfiles
from fsmigrate.distributed import EACH, at_key_starts
from fsmigrate.engine import reconcile, testhooks
from fsmigrate.engine.run import Run, ScriptRaised
from fsmigrate.engine.settle import reread_pending
from fsmigrate.errors import BeamPipelineFailed, LockLost, UsageError
from fsmigrate.files import private_append
from fsmigrate.scripts.context import Context
from fsmigrate.scripts.operations import Archived, Operation, Precondition
from fsmigrate.state.database import OpRecord
from fsmigrate.times import now_text

RANGES_PER_WORKER = 4
DOCS_PER_BUCKET = 1_000


def _add_usage(run: Run, outputs: workfiles.Outputs) -> None:
    """The workers' reads, archived bytes, throttling, retries and waits, into the run's
    record."""
    run.add_usage(
        reads=outputs.usage.get("reads", 0),
        archive_bytes=outputs.usage.get("archive_bytes", 0),
        retries=outputs.usage.get("retries", 0),
        waited=outputs.usage.get("waited_ms", 0) / 1000,
    )
    if run.traffic is None:
        return
    stats = run.traffic.stats
    for worker in outputs.traffic:
        stats.throttle_events += worker.get("throttle_events", 0)
        stats.cuts += worker.get("cuts", 0)
        stats.waited_seconds += worker.get("waited_seconds", 0.0)
        for code, n in (worker.get("by_code") or {}).items():
            stats.by_code[code] = stats.by_code.get(code, 0) + n
        low = worker.get("lowest_rate")
        if low is not None and (stats.lowest_rate is None or low < stats.lowest_rate):
            stats.lowest_rate = low


def _share(limits: Any, workers: int) -> Optional[dict]:
    """Each worker's part of the run's traffic limits: the cap and the ramp divided among
    the workers (like FirestoreIO's hintMaxNumWorkers), so together they keep to them."""
    if limits is None or not limits.active:
        return None
    shared = dataclasses.replace(
        limits,
        max_rate=limits.max_rate / workers if limits.max_rate else None,
        ramp=dataclasses.replace(limits.ramp, start=limits.ramp.start / workers)
        if limits.ramp
        else None,
        recovery=dataclasses.replace(limits.recovery, start=limits.recovery.start / workers),
    )
    return shared.to_json()


@contextlib.contextmanager
def _stderr_to(path: Optional[Path]) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2, which the DirectRunner's worker
    processes inherit) to `path` for the duration."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = private_append(path)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class BeamDistributor:
    """Runs one migration's plan-and-apply as a Beam pipeline (see fsmigrate.beam)."""

    workers: int = 2
    options: dict[str, str] = field(default_factory=dict)
    journal_root: Optional[str] = None  # default: beside the state file
    keep_journal: bool = False
    log: Optional[str] = None  # Beam's own log lines: a file (default: the run's), "terminal"

    def check(self, script: Any) -> None:
        """Refuse, before anything runs, a script Beam cannot split."""
        if script.forms.distributed is None:
            raise UsageError(
                f"revision {script.revision} ({script.path}) is a generator `plan(ctx)`, which "
                "cannot be split across workers; declare `source = scan(...)` with `def "
                "each(ctx, doc)` or `def key(doc)` + `def merge(ctx, key, docs)` "
                "(fsmigrate.distributed), or run it with --runner local"
            )

    def distribute(self, run: Run) -> None:
        self.check(run.script)
        root = self.journal_root or ""
        if staging.remote(self.options) and "://" not in root:
            raise UsageError(
                f"--beam-option runner={self.options['runner']}: its workers run on other "
                "machines and cannot write the journal to this one's disk; give "
                "--beam-option journal=gs://BUCKET/PATH"
            )
        with self._staged() as staged:  # before anything is recorded or read
            self._distribute(run, staged)

    def _distribute(self, run: Run, staged: list[str]) -> None:
        script, run_id, dry_run, note = run.script, run.run_id, run.dry_run, run.note
        forms = script.forms
        form = forms.distributed
        store = run.store
        settings = run.settings
        root = self.journal_root or str(Path(str(run.state.path) + ".journal"))
        if "://" not in root:  # recorded whole: the next command may run elsewhere
            root = str(Path(root).expanduser().resolve())
        directory = workfiles.join(root, run_id)
        workfiles.make_private(directory)  # there before it is recorded: readable, if empty
        if not dry_run:  # findable before anything is journaled, from any state file
            run.state.record_journal(run_id, directory, keep=self.keep_journal)
            journal.publish(store, run.state, run_id, directory, keep=self.keep_journal)
            testhooks.reached("journal-published")
        source = forms.source
        assert form is not None and source is not None  # what self.check let through
        points, total = (
            store.split(  # PartitionQuery, or a count and a query per point: at the snapshot
                source.collection,
                self.workers * RANGES_PER_WORKER,
                group=source.group,
                where=source.where,
                read_time=run.read_time,
            )
        )
        if form != EACH and forms.key_is_prefix is not None and not source.group:
            try:  # where the prefix keys start: no range reads past its end
                points = at_key_starts(points, forms.key_is_prefix)
            except Exception as exc:  # the script's own key_is_prefix
                raise ScriptRaised(exc) from exc
        # a bucket of keys is merged in one worker's memory: keep buckets small
        buckets = max(self.workers * RANGES_PER_WORKER, len(points) + 1)
        if form != EACH:
            buckets = max(buckets, -(-total // DOCS_PER_BUCKET))
        bounds = [None, *points, None]
        ranges = [(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        target = store.target
        note(
            f"beam: {len(ranges)} ranges of {source.collection} on {self.workers} worker(s)"
            f" ({'per document' if form == EACH else 'keyed'})"
        )
        failure: Optional[BaseException] = None
        control = run.control if not dry_run else None
        log = self._log_path(root, run_id, Path(str(run.state.path)))
        with _stderr_to(log):  # Beam's and its workers' chatter is not the report
            try:
                import apache_beam as beam

                from fsmigrate.beam import pipeline as bp

                spec = bp.WorkerSpec(
                    project=target.project,
                    database=target.database,
                    emulator_host=target.emulator_host,
                    markers_root=store.reserved_root,
                    revision=script.revision,
                    script_path=str(script.path),
                    script_source=Path(script.path).read_bytes(),
                    journal_dir=directory,
                    dry_run=dry_run,
                    capture_writes=settings.capture_writes,
                    batch_size=settings.batch_size,
                    batch_bytes=settings.batch_bytes,
                    buckets=buckets,
                    lease_holder=settings.lease_holder,
                    done=frozenset(run.all_written_before()),
                    limits=_share(run.limits, self.workers),
                    patience=store.policy.patience,
                    connection=store.connection.for_workers(
                        same_machine=bp.runs_here(self.options)
                    ),
                    policy=store.policy,
                    lock_ttl=settings.lease_ttl,
                    read_time=run.read_time,
                    workers=self.workers,
                    control_interval=control.interval if control is not None else None,
                    max_skip_ratio=control.max_skip_ratio if control is not None else None,
                )
                pipeline_options = bp.options(self.workers, self.options, staged)
                lease = settings.lease if not bp.runs_here(self.options) else None
                if lease is not None:  # its workers may outlive this process
                    lease.start_workers_elsewhere()
                with beam.Pipeline(options=pipeline_options) as p:
                    bp.build(p, spec, form, ranges)
                if lease is not None:  # the pipeline has finished: no worker commits
                    lease.workers_done()
            except Exception as exc:  # the worker's error arrives wrapped, as text
                failure = exc
        if log is not None and log.exists() and log.stat().st_size:
            note(f"beam: the pipeline's log is {log}")
        elif log is not None:
            log.unlink(missing_ok=True)
        self._import(run, directory)
        if not dry_run:
            run.state.finish_import(run_id, by=f"run {run_id}", interrupted=False)
            journal.unpublish(store, run_id)  # (in this state file: no other needs it)
        stopped = None
        if control is not None:  # the controls the workers took, recorded with the run
            control.take(run)
            stopped = control.stopped
        if failure is None:
            with workfiles.read_outputs(directory) as outputs:
                for text in outputs.notes:
                    note(text)
            if forms.finish is not None and stopped is None:
                finish_ctx = Context(
                    store, script.revision, dry_run, None, note, read_time=run.read_time
                )
                forms.finish(finish_ctx, outputs.counts)
            _add_usage(run, outputs)
        if not dry_run and (failure is None or stopped is not None):
            self._settle_own(run)  # a stopped run leaves nothing in flight
        if not self.keep_journal:
            workfiles.remove_tree(directory)
        if not dry_run:
            run.state.journal_gone(run_id, kept=self.keep_journal)
        if failure is not None and stopped is None:
            raise self._classify(failure, script.revision) from failure
        if control is not None:
            control.finish(run)  # raises RunStopped after a stop

    @contextlib.contextmanager
    def _staged(self) -> Iterator[list[str]]:
        """What workers outside this environment need (fsmigrate's wheel), in a
        temporary directory for the pipeline's submission; nothing for the DirectRunner."""
        if not staging.needed(self.options):
            yield []
            return
        with tempfile.TemporaryDirectory(prefix="fsmigrate-staging-") as tmp:
            yield [str(staging.wheel(Path(tmp)))]

    def _log_path(self, root: str, run_id: str, state: Path) -> Optional[Path]:
        """Where Beam's own log lines go: None for the terminal; else a local file."""
        if self.log == "terminal":
            return None
        if self.log:
            return Path(self.log).expanduser().resolve()
        if "://" in root:  # a gs:// journal: the log stays local, beside the state file
            return Path(str(state) + ".journal").resolve() / f"{run_id}.log"
        return Path(root) / f"{run_id}.log"

    # ---- after the pipeline -------------------------------------------------------------

    def _import(self, run: Run, directory: str) -> None:
        """Record every journaled batch in the state file, with its outcome when known."""

        def counted(records: Sequence[OpRecord]) -> None:
            for record in records:
                run.counts[record.kind] += 1
            run.progress.advance(len(records))

        status = "planned" if run.dry_run else "pending"
        journal.import_batches(run.state, run.run_id, directory, status=status, on_batch=counted)

    def _settle_own(self, run: Run) -> None:
        """Batches of a retried unit that have no outcome: settled by re-reading (landed:
        committed; unchanged: sent again, the same journaled write; changed: skipped)."""
        run_id, size = run.run_id, run.settings.batch_size
        pending = run.state.pending_ops([run_id])
        if not pending:
            return
        found, docs, broken = reread_pending(run.store, pending, size)
        now = now_text()
        committed, skipped, resend = [], [], []
        for row in pending:
            outcome = found[(run_id, row["seq"])]
            pre = Precondition.from_json(row["precondition"])
            if outcome == reconcile.LANDED:
                committed.append((row["seq"], now))
            elif outcome == reconcile.CHANGED or (run_id, row["grp"]) in broken:
                skipped.append((row["seq"], pre.why_not(docs.get(row["path"]))))
            else:
                op = Operation(
                    row["kind"],
                    row["path"],
                    precondition=pre,
                    before=Archived(row["path"], row["before"]),
                    write=row["write"],
                )
                op.group = row["grp"]
                resend.append((row["seq"], op))
        for start in range(0, len(resend), size):  # the run's limiter applies
            done, gone = run.committer.commit(resend[start : start + size])
            committed += done
            skipped += gone
        run.state.settle_ops(run_id, committed=committed, skipped=skipped)

    def _classify(self, exc: BaseException, revision: str) -> BaseException:
        from fsmigrate.beam.pipeline import MIGRATION_ERROR

        text = str(exc)
        if MIGRATION_ERROR in text:
            found = re.search(re.escape(MIGRATION_ERROR) + r": ([^\n]*)", text)
            return ScriptRaised(RuntimeError(found.group(1) if found else text.splitlines()[-1]))
        if "lease is gone" in text:
            return LockLost(revision, "the coordinator's lease is gone (broken or taken over)")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        last = next(
            (line for line in reversed(lines) if "Error" in line or "error" in line),
            lines[-1] if lines else type(exc).__name__,
        )
        return BeamPipelineFailed(
            f"the Beam pipeline failed: {last[:300]}; what committed is "
            "recorded: run the same command again to finish"
        )
