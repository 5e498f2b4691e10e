"""The Beam pipeline of one migration: read ranges, plan, journal, commit.

Everything a worker needs travels in a `WorkerSpec` (picklable: plain values and the
script's source text, which the worker executes itself), so the same pipeline runs on
the DirectRunner's worker processes and on Dataflow.

Units of work: for a per-document script, one element per range of document names; for
a keyed script, one element per range (its prefix keys, merged without a shuffle) and
one per bucket of the other keys (the keys of a bucket are merged one after the other). A unit that is retried (Dataflow retries a failed bundle; its writes
stay done while its outputs are discarded) finds the journal files of its earlier
attempts and does not plan again what they journaled; what they left without an
outcome is settled by the coordinator by re-reading, like a crashed local run.

Workers retry Firestore within the run's patience, like the local runner, and log what
they wait for; they commit only while the coordinator's lease is good (`_LeaseFence`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import apache_beam as beam

from fsmigrate.beam import workfiles
from fsmigrate.distributed import EACH, PrefixGroups, check_prefix, checked_key
from fsmigrate.engine import control as live
from fsmigrate.engine import testhooks
from fsmigrate.engine.batching import (
    after_json,
    encoded_bytes,
    read_before_blind_sets,
    refuse_parents,
)
from fsmigrate.engine.commit import Committer
from fsmigrate.engine.lease import DEFAULT_TTL, lock_path, margin
from fsmigrate.errors import FirestoreError, FsMigrateError, LockLost, PlanError
from fsmigrate.firestore.connection import Connection
from fsmigrate.firestore.patience import DEFAULT_PATIENCE, Waiting
from fsmigrate.firestore.store import Doc, RetryPolicy, Store, Target
from fsmigrate.scripts.context import Barrier, Context
from fsmigrate.scripts.operations import Group, Operation, check_operation

MIGRATION_ERROR = "fsmigrate: the migration's own code raised"
NOTES = "notes"


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker gets (pickled with the pipeline): with `connection`, the run's
    endpoint, quota project, service account to impersonate and emulator (never a
    credentials file: each worker finds its own credentials where it runs, on Dataflow
    the worker service account's); with `policy`, the run's patience, retry waits and
    call deadlines. Without them (None), the worker's own environment's."""

    project: str
    database: str
    emulator_host: Optional[str]
    markers_root: str
    revision: str
    script_path: str
    script_source: bytes
    journal_dir: str
    dry_run: bool
    capture_writes: bool
    batch_size: int
    batch_bytes: int
    buckets: int
    lease_holder: Optional[str]
    done: frozenset = field(default_factory=frozenset)  # (path, kind) applied earlier
    limits: Optional[dict] = None  # this worker's share of the traffic limits (JSON)
    patience: float = DEFAULT_PATIENCE  # seconds without progress before giving up
    lock_ttl: float = DEFAULT_TTL  # the coordinator's lease's TTL (for its margin)
    read_time: Optional[dt.datetime] = None  # the run's snapshot: every read is made at it
    workers: int = 1  # a `control rate N` is shared among them
    control_interval: Optional[float] = None  # None: no live control (a dry-run)
    max_skip_ratio: Optional[float] = None
    connection: Optional[Connection] = None
    policy: Optional[RetryPolicy] = None


class _Refused(Exception):
    """The migration's own code raised on a worker (reported as a migration failure)."""


def _load_script(spec: WorkerSpec) -> Any:
    from fsmigrate.scripts.loader import exec_module

    name = f"fsmigrate_beam_{spec.revision}_{uuid.uuid4().hex[:8]}"
    return exec_module(Path(spec.script_path), spec.script_source, name)


class _WorkerContext(Context):
    """plan's ctx on a worker: reads of single documents and of what is under them
    (subcollections: a subtree's delete or move), operations, notes, counters; no scans of
    top-level collections or groups (the runner reads the declared source)."""

    def scan(self, collection: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("group") or "/" not in collection:
            raise PlanError(
                self.revision,
                "ctx.scan() of a collection or group is not available on Beam workers: the "
                "runner reads the declared source (subcollections of a document may be read)",
            )
        return super().scan(collection, *args, **kwargs)

    def barrier(self) -> Barrier:
        raise PlanError(
            self.revision,
            "ctx.barrier() orders batches of one process; on Beam batches land in any order",
        )


LOG = logging.getLogger("fsmigrate.beam")
LOG_EVERY = 30.0  # seconds between two log lines of one wait


class _LeaseFence:
    """The coordinator's lease as a worker sees it: the store's fence (see
    engine.lease). A worker cannot renew the lease; it reads the lock document and writes
    only while that says the lease is its coordinator's and good (until `expires_at`,
    less the margin). When that time has passed, the document is read once more (the
    coordinator may have renewed it meanwhile); a lease that is gone, expired or cannot be
    read then stops the worker: LockLost, never a write after the lock could be taken
    over."""

    def __init__(self, store: Store, path: str, holder: str, ttl: float) -> None:
        self.store = store
        self.path = path
        self.holder = holder
        self.margin = margin(ttl)
        self.valid_until = 0.0

    def refresh(self, read: Optional[Any] = None) -> float:
        """Read the lock document (with retries, or `read` once) and note until when the
        lease is good; the seconds left, or LockLost."""
        try:
            current = (read or self.store.get)(self.path)
        except FirestoreError as exc:
            raise self._lost(f"it could not be read before it expired: {exc}") from exc
        if current is None or current.get("holder") != self.holder:
            raise self._lost("broken or taken over")
        expires = current.get("expires_at")
        if not isinstance(expires, dt.datetime):
            raise self._lost("it has no expiry")
        left = (expires - dt.datetime.now(dt.timezone.utc)).total_seconds() - self.margin
        if left <= 0:
            raise self._lost("it expired: the coordinator could not renew it")
        self.valid_until = time.monotonic() + left
        return left

    def __call__(self) -> float:
        left = self.valid_until - time.monotonic()
        return left if left > 0 else self.refresh(self.store.peek)

    def _lost(self, why: str) -> LockLost:
        return LockLost(self.store.target.describe(), f"the coordinator's lease is gone ({why})")


class _Worker:
    """Planning, batching, journaling and committing on one worker (one DoFn instance)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec

    def setup(self) -> None:
        from fsmigrate.distributed import forms_of

        spec = self.spec
        self.store = _worker_store(spec)
        from fsmigrate.scripts import archive

        module = _load_script(spec)
        self.forms = forms_of(module)[0]
        # the coordinator builds a pipeline only for a script with a source (Beam.check)
        assert self.forms.source is not None
        self.source = self.forms.source
        self.policy = archive.policy(getattr(module, "archive", archive.FULL))
        limiter = None
        if spec.limits is not None and not spec.dry_run:
            from fsmigrate.engine import traffic

            limiter = traffic.make(traffic.Limits.from_json(spec.limits))
        self.committer = Committer(self.store, spec.batch_bytes, limiter)
        self.payload = spec.batch_bytes - self.store.commit_size(())
        self.worker = uuid.uuid4().hex[:12]
        self.batches = 0
        self.lock = lock_path(self.store)
        self.fence: Optional[_LeaseFence] = None
        if spec.lease_holder is not None and not spec.dry_run:
            self.fence = _LeaseFence(self.store, self.lock, spec.lease_holder, spec.lock_ttl)
            self.store.fence = self.fence
        self.control: Optional[live.Reader] = None
        self.budget: Optional[live.SkipBudget] = None
        if spec.control_interval is not None and spec.lease_holder and not spec.dry_run:
            self.control = live.Reader(self.store, spec.lease_holder, spec.control_interval)
            if spec.max_skip_ratio is not None:
                self.budget = live.SkipBudget(spec.max_skip_ratio)
        self.stopped = False  # a stop was taken: nothing more is journaled or sent
        self.rate: Optional[float] = None

    # -- one unit -------------------------------------------------------------------------

    def begin(self, unit: str) -> list[str]:
        """Start a unit; what its earlier attempts journaled is skipped. The notes and
        counters of the unit come back as JSON lines."""
        self.unit = unit
        self.attempt = uuid.uuid4().hex[:8]
        self.skip = {path for path, _ in self.spec.done}  # documents written earlier
        for path in workfiles.list_files(self.spec.journal_dir, f"batch-u{unit}-"):
            if workfiles.is_batch(path):
                self.skip.update(op["path"] for op in workfiles.read_batch(path, False).ops)
        self.batch: list[Operation] = []
        self.paths: set[str] = set()
        self.used = 0
        self.groups = 0
        self.out: list[str] = []
        self.ctx = _WorkerContext(
            self.store,
            self.spec.revision,
            self.spec.dry_run,
            None,
            self._note,
            read_time=self.spec.read_time,
            max_group=self.spec.batch_size,
        )
        self.usage = {"reads": 0, "archive_bytes": 0}
        self.waits = _Waits(self.store)
        if self.committer.traffic is not None:
            self.committer.traffic.begin_run()
        return self.out

    def _note(self, text: str) -> None:
        self.out.append(json.dumps({"note": text}))

    def end(self) -> list[str]:
        self._flush()
        for name, n in sorted(self.ctx.counts.items()):
            self.out.append(json.dumps({"count": name, "n": n}))
        self.usage["reads"] += self.ctx.reads
        self.usage.update(self.waits.usage())
        self.out.append(json.dumps({"usage": self.usage}))
        if self.committer.traffic is not None:
            self.out.append(json.dumps({"traffic": self.committer.traffic.report()}))
        return self.out

    def plan(self, produced: Optional[Iterable[Any]]) -> None:
        """Take the operations one call of the migration yields."""
        if self.stopped:
            return
        try:
            for item in produced or ():
                if isinstance(item, Barrier):
                    raise PlanError(self.spec.revision, "ctx.barrier() has no meaning on Beam")
                for unit in self._units(item):
                    self._add(unit)
        except PlanError as exc:  # a bad operation is the migration's fault, as locally
            raise _Refused(f"{MIGRATION_ERROR}: {exc}") from exc
        except (FsMigrateError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _Refused(f"{MIGRATION_ERROR}: {type(exc).__name__}: {exc}") from exc

    def _units(self, item: Any) -> Iterator[list[Operation]]:
        if isinstance(item, Group):
            for child in item.children:
                yield from self._units(child)
            if not item.ops:
                return
            if len(item.ops) > self.spec.batch_size:
                raise PlanError(
                    self.spec.revision,
                    f"an atomic group of {len(item.ops)} "
                    f"operations does not fit in a batch of {self.spec.batch_size}",
                )
            self.groups += 1
            for op in item.ops:
                self._check(op)
                op.group = self.groups
            if any(op.path in self.skip for op in item.ops):
                return
            yield list(item.ops)
            return
        self._check(item)
        if item.path not in self.skip:
            yield [item]

    def _check(self, op: Any) -> None:
        problem = check_operation(op)
        if problem:
            raise PlanError(self.spec.revision, problem)

    def _add(self, unit: list[Operation]) -> None:
        from fsmigrate.errors import WriteTooLarge

        need = sum(encoded_bytes(self.store, op, self.store.build_write) for op in unit)
        if need > self.payload:
            raise WriteTooLarge(unit[0].path, need, self.spec.batch_bytes)
        if self.batch and (
            len(self.batch) + len(unit) > self.spec.batch_size
            or self.used + need > self.payload
            or any(op.path in self.paths for op in unit)
        ):
            self._flush()  # (one commit cannot write a document twice)
        self.paths.update(op.path for op in unit)
        self.batch.extend(unit)
        self.used += need
        if len(self.batch) >= self.spec.batch_size:
            self._flush()

    # -- one batch ------------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self.batch, self.used, self.paths = self.batch, [], 0, set()
        if not batch or self._hold():
            return  # (a batch after a stop is dropped unjournaled: the next run plans it)
        batch = refuse_parents(self.store, batch, self._note, self.spec.read_time)
        if not batch:
            return
        spec = self.spec
        self.usage["reads"] += sum(op.needs_read for op in batch)
        read_before_blind_sets(self.store, batch)
        archive = not spec.dry_run or spec.capture_writes
        records: list[dict[str, Any]] = []
        for op in batch:
            write = self.store.build_write(op) if archive else None
            op.write = write
            records.append(
                {
                    "kind": op.kind,
                    "path": op.path,
                    "precondition": op.precondition.to_json(),
                    "before": self.policy.image(op.before),
                    "write": write,
                    "group": op.group,
                    "label": op.label,
                    "after": after_json(op, write),
                }
            )
        for record in records:  # what the apply archives (a dry-run: what it would)
            self.usage["archive_bytes"] += len(record["before"] or b"")
            if not archive:
                record["before"] = None
        self.batches += 1
        stem = workfiles.join(
            spec.journal_dir, f"batch-u{self.unit}-{self.attempt}-{self.worker}-{self.batches:06d}"
        )
        workfiles.write_file(
            stem + workfiles.BATCH, workfiles.encode_batch(self.worker, self.batches, records)
        )
        if spec.dry_run:
            return
        self._check_lease()
        numbered = list(enumerate(batch))
        testhooks.reached("before-commit", self.batches)
        committed, skipped = self.committer.commit(numbered)
        testhooks.reached("after-commit", self.batches)
        if self.budget is not None:
            self.budget.add(len(committed), len(skipped))
        workfiles.write_file(
            stem + workfiles.OUTCOME,
            json.dumps({"committed": committed, "skipped": skipped}).encode(),
        )

    def _hold(self) -> bool:
        """The live controls at this batch boundary: a new rate (this worker's share), a
        pause (wait here, sending nothing, until resumed), a stop (True: drop the batch
        and every later one). Past the skip budget, this worker sends the stop."""
        control = self.control
        if control is None or self.stopped:
            return self.stopped
        if self.budget is not None and control.controls.stop is None:
            why = self.budget.exceeded()
            if why is not None:
                with contextlib.suppress(FsMigrateError):  # the lock is gone: checked below
                    live.send(
                        self.store,
                        live.STOP,
                        why,
                        holder=self.spec.lease_holder,
                        operator=live.BUDGET_OPERATOR,
                    )
                control.poll(force=True)
        control.poll()
        self._take_rate()
        while control.controls.paused and control.controls.stop is None:
            self._check_lease()
            time.sleep(control.interval)
            control.poll()
            self._take_rate()
        self.stopped = control.controls.stop is not None
        return self.stopped

    def _take_rate(self) -> None:
        assert self.control is not None
        rate = self.control.controls.rate
        if rate is None or rate == self.rate:
            return
        self.rate = rate
        if self.committer.traffic is None:
            from fsmigrate.engine import traffic

            self.committer.traffic = traffic.Limiter(traffic.Limits())
            self.committer.traffic.begin_run()
        self.committer.traffic.set_cap(rate / max(1, self.spec.workers))

    def _check_lease(self) -> None:
        """A worker never commits for a coordinator that lost the target's lease (read
        again before each batch; each commit's deadline is cut to its expiry)."""
        if self.fence is not None:
            self.fence.refresh()


def _worker_store(spec: WorkerSpec) -> Store:
    """A worker's store: the run's connection settings, patience and timeouts (its own
    credentials); its waits go to the worker's log. Its DoFn's teardown closes it."""
    store = Store(  # (the coordinator gave the connection as workers get it: for_workers)
        Target(spec.project, spec.database, spec.emulator_host),
        policy=spec.policy or RetryPolicy.from_env(spec.patience),
        connection=spec.connection,
    )
    store.reserved_root = spec.markers_root
    logged = [0.0]

    def log(waiting: Optional[Waiting]) -> None:
        now = time.monotonic()
        if waiting is not None and now - logged[0] >= LOG_EVERY:
            logged[0] = now
            LOG.warning("%s (%s)", waiting.message(), waiting.what)
        elif waiting is None and logged[0]:
            logged[0] = 0.0
            LOG.warning("Firestore answers again")

    store.patience.listener = log
    return store


class _Waits:
    """A unit's retries and time waited for Firestore (from the worker's store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.retries = store.retries
        self.waited = store.waited

    def usage(self) -> dict[str, int]:
        return {
            "retries": self.store.retries - self.retries,
            "waited_ms": int((self.store.waited - self.waited) * 1000),
        }


def _call(fn: Any, *args: Any) -> Any:
    """Call the migration's own code; what it raises is reported as a migration failure."""
    try:
        return fn(*args)
    except (FsMigrateError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise _Refused(f"{MIGRATION_ERROR}: {type(exc).__name__}: {exc}") from exc


def _doc(pb_bytes: bytes, store: Store) -> Doc:
    from google.cloud.firestore_v1 import types

    return Doc(types.Document.pb().FromString(pb_bytes), store.client)


class _WorkerFn(beam.DoFn):
    """A DoFn with a `_Worker`, set up once per DoFn instance; its teardown closes the
    worker's channels."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec

    def setup(self) -> None:
        self.w = _Worker(self.spec)
        self.w.setup()

    def teardown(self) -> None:
        store = getattr(getattr(self, "w", None), "store", None)
        if store is not None:
            store.close()


class ApplyEach(_WorkerFn):
    """One range of document names: read it, run `each(ctx, doc)` per document, journal
    and commit its batches."""

    def process(self, element: tuple[int, Optional[str], Optional[str]]) -> Iterator[str]:
        index, start, end = element
        w = self.w
        w.begin(f"r{index}")
        source = w.source
        for doc in w.store.scan(
            source.collection,
            group=source.group,
            where=source.where,
            start=start,
            end=end,
            read_time=self.spec.read_time,
        ):
            if w.stopped:
                break
            w.usage["reads"] += 1
            w.plan(_call(w.forms.each, w.ctx, doc))
        yield from w.end()


class ReadKeyed(_WorkerFn):
    """One range of document names: each document with its key, to a bucket of keys;
    except the documents of prefix keys (`key_is_prefix`), merged right here.

    A prefix key's documents lie together from the key itself on (`Foo`, `Foo_1`...), and
    the coordinator cuts the ranges where prefix keys start (`at_key_starts`): every
    prefix key's documents are in one range, whose worker keeps them as its scan goes and
    merges each key when the scan passes its names."""

    def process(
        self, element: tuple[int, Optional[str], Optional[str]]
    ) -> Iterator[tuple[int, tuple[str, bytes]]]:
        index, start, end = element
        w = self.w
        source = w.source
        prefixed = None if source.group else w.forms.key_is_prefix
        w.begin(f"k{index}")
        groups = PrefixGroups(prefixed)
        first = None if start is None else start.rsplit("/", 1)[1]
        reads = 0  # (w.begin counts the unit's retries and waits)
        for doc in w.store.scan(
            source.collection,
            group=source.group,
            where=source.where,
            start=start,
            end=end,
            read_time=self.spec.read_time,
        ):
            reads += 1
            self._merge(groups.passed(doc.id))
            key = self._key(doc)
            if key is None:
                continue
            if key in groups.open and doc.id.startswith(key):  # a prefix key held here
                groups.add(key, doc)
                continue
            if _call(check_prefix, doc.id, key, prefixed):
                if first is not None and key < first:
                    raise RuntimeError(  # at_key_starts cuts no range inside a prefix key
                        f"range {index} starts at {first!r}, inside the names of prefix key "
                        f"{key!r}: its documents would be merged in two ranges"
                    )
                groups.add(key, doc)
                continue
            yield bucket_of(key, self.spec.buckets), (key, doc.pb.SerializeToString())
        self._merge(groups.rest())
        w.usage["reads"] += reads
        # The hint above is the main output's: Beam reads it at run time (the type check
        # and coder of the GroupByKey that follows). Only recent Beam releases take a
        # TaggedOutput in a hint (apache/beam#37434); older ones, which pyproject allows,
        # would type the main output as the union (apache/beam#26493).
        for line in w.end():
            yield beam.pvalue.TaggedOutput(NOTES, line)  # type: ignore[misc]

    def _key(self, doc: Doc) -> Optional[str]:
        key_of = self.w.forms.key
        assert key_of is not None
        return _call(lambda d: checked_key(key_of(d), d), doc)

    def _merge(self, done: list[tuple[str, list[Any]]]) -> None:
        merge = self.w.forms.merge
        assert merge is not None
        for key, docs in done:
            self.w.plan(_call(merge, self.w.ctx, key, docs))


def bucket_of(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % buckets


class ApplyMerged(_WorkerFn):
    """One bucket of keys: `merge(ctx, key, docs)` per key (documents in name order), then
    journal and commit the batches."""

    def process(self, element: tuple[int, Iterable[tuple[str, bytes]]]) -> Iterator[str]:
        bucket, items = element
        w = self.w
        w.begin(f"b{bucket}")
        by_key: dict[str, list[bytes]] = {}
        for key, raw in items:
            by_key.setdefault(key, []).append(raw)
        for key in sorted(by_key):
            if w.stopped:
                break
            docs = sorted((_doc(raw, w.store) for raw in by_key.pop(key)), key=lambda d: d.path)
            w.plan(_call(w.forms.merge, w.ctx, key, docs))
        yield from w.end()


def build(pipeline: Any, spec: WorkerSpec, form: str, ranges: list[tuple]) -> None:
    """The migration's transforms on `pipeline`: ranges -> plan/journal/commit -> notes."""
    split = pipeline | "Ranges" >> beam.Create(ranges) | "Spread" >> beam.Reshuffle()
    if form == EACH:
        notes = split | "Each" >> beam.ParDo(ApplyEach(spec))
    else:
        keyed = split | "Key" >> beam.ParDo(ReadKeyed(spec)).with_outputs(NOTES, main="docs")
        merged = (
            keyed.docs | "Group" >> beam.GroupByKey() | "Merge" >> beam.ParDo(ApplyMerged(spec))
        )
        notes = (keyed[NOTES], merged) | "All notes" >> beam.Flatten()
    _ = notes | "Notes" >> beam.io.WriteToText(
        workfiles.join(spec.journal_dir, "notes"), file_name_suffix=".json"
    )


def runs_here(extra: dict[str, str]) -> bool:
    """Whether the workers run on this machine: the DirectRunner (the default), whose
    worker processes are this process's own (nothing to stage for them)."""
    from fsmigrate.beam import staging

    return not staging.needed(extra)


def options(workers: int, extra: dict[str, str], staged: Iterable[str] = ()) -> Any:
    """Pipeline options: the DirectRunner on `workers` processes unless `extra` names
    another runner (e.g. runner=DataflowRunner, project=..., region=..., temp_location=gs://...);
    `staged`: packages for the workers (`--extra_package`, after any `extra` names)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = {
        "runner": "DirectRunner",
        "direct_running_mode": "multi_processing",
        "direct_num_workers": str(workers),
        "default_sdk_harness_log_level": "WARNING",
        **extra,
    }
    args = [f"--{k}={v}" for k, v in flags.items()]
    return PipelineOptions([*args, *(f"--extra_package={path}" for path in staged)])
