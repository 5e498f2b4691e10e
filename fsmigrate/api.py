"""The public entry points: one function per command (like alembic's `command` module).

The command line is a thin skin over these; a scheduled job, an orchestrator task or a
test harness calls them directly:

    from fsmigrate import api

    cfg = api.Config(project="my-proj", state="/var/lib/fsmigrate/state.db")
    result = api.rerun(cfg, "0001", confirm=lambda prompt: True)
    health = api.check(cfg, "heartbeats", max_docs=50)

Each function does what its command does (the drift check, the lease, adopting markers,
choosing what is pending, running, writing plan files) and returns plain data. None of
them prints or exits: errors are `FsMigrateError` subclasses (each with the exit code the
CLI uses), progress is reported through a `Progress` object, and an apply to a real
project asks `confirm(prompt)`; without one it is refused (`ConfirmationRequired`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from fsmigrate import checks, times
from fsmigrate.checks import CheckResult
from fsmigrate.engine import testhooks, traffic
from fsmigrate.engine.batching import (
    DEFAULT_BATCH_BYTES,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MIN_BATCH_BYTES,
)
from fsmigrate.engine.lease import DEFAULT_TTL, Lease
from fsmigrate.engine.lease import break_lock as _break_lock
from fsmigrate.engine.lease import describe as _describe
from fsmigrate.engine.markers import DEFAULT_ROOT, Markers
from fsmigrate.engine.run import Distributor, NoProgress, Progress
from fsmigrate.engine.runner import MAX_CONCURRENCY, Runner
from fsmigrate.errors import (
    Aborted,
    ConfirmationRequired,
    FsMigrateError,
    FsMigrateWarning,
    RunNotFound,
    ScriptsChanged,
    StateNotFound,
    UsageError,
)
from fsmigrate.firestore.store import (
    VERSIONS_KEPT,
    VERSIONS_KEPT_PITR,
    RetryPolicy,
    Store,
    Target,
    parse_patience,
    target_from_env,
)
from fsmigrate.lint import Report as LintReport
from fsmigrate.lint import lint_paths
from fsmigrate.report import audit as audit_report
from fsmigrate.report import runs as report
from fsmigrate.scripts import drift, planfile
from fsmigrate.scripts import loader as scripts
from fsmigrate.scripts.archive import ArchiveUnavailable
from fsmigrate.scripts.archive import unavailable as _archive_gone
from fsmigrate.scripts.restore import check as _restorable
from fsmigrate.scripts.restore import restore_script
from fsmigrate.state.database import State, new_id
from fsmigrate.state.prune import PruneResult, parse_before
from fsmigrate.state.prune import prune as _prune
from fsmigrate.state.runs import RunResult
from fsmigrate.times import parse_instant, rfc3339

__all__ = [
    "Config",
    "Progress",
    "NoProgress",
    "RunResult",
    "UpgradeResult",
    "StatusRow",
    "StatusReport",
    "Finding",
    "RunAudit",
    "Marked",
    "LockHolder",
    "CheckResult",
    "ConfirmationRequired",
    "FsMigrateError",
    "upgrade",
    "rerun",
    "apply_plan",
    "restore",
    "status",
    "history",
    "verify",
    "audit",
    "stamp",
    "resolve",
    "break_lock",
    "check",
    "new",
    "check_names",
    "lint",
    "LintReport",
    "RunOperation",
    "prune",
    "PruneResult",
    "ArchiveUnavailable",
    "FsMigrateWarning",
    "MAX_BATCH",
    "DEFAULT_BATCH_BYTES",
    "MIN_BATCH_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_CONCURRENCY",
    "DEFAULT_MARKERS",
]
DEFAULT_MARKERS = DEFAULT_ROOT

Confirm = Callable[[str], bool]
PathLike = Union[str, "os.PathLike[str]"]


# ---- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Where to work. A missing project comes from FSMIGRATE_PROJECT or
    GOOGLE_CLOUD_PROJECT, as on the command line; the emulator is used when
    FIRESTORE_EMULATOR_HOST is set. `lock_ttl` defaults to FSMIGRATE_LOCK_TTL or 300 s;
    `patience` (seconds without progress before a run gives up on Firestore) to
    FSMIGRATE_PATIENCE or 10 minutes (docs/network-failures.md)."""

    project: Optional[str] = None
    database: Optional[str] = "(default)"
    state: PathLike = "state.db"
    migrations: PathLike = "migrations"
    markers_collection: str = DEFAULT_ROOT
    lock_ttl: Optional[float] = None
    patience: Union[float, str, None] = None  # seconds, or a duration: "10m", "90s", "1h"

    def __post_init__(self) -> None:
        if not self.markers_collection or "/" in self.markers_collection:
            raise UsageError(
                f"markers collection {self.markers_collection!r} must be a top-level collection id"
            )
        if self.patience is not None:  # kept as seconds
            object.__setattr__(self, "patience", parse_patience(self.patience))

    @property
    def state_path(self) -> Path:
        return Path(self.state)

    @property
    def migrations_path(self) -> Path:
        return Path(self.migrations)

    def target(self) -> Target:
        return target_from_env(self.project, self.database)

    def _store(self, target: Optional[Target] = None) -> Store:
        patience = float(self.patience) if self.patience is not None else None
        store = Store(target or self.target(), policy=RetryPolicy.from_env(patience))
        store.reserved_root = self.markers_collection
        return store

    def _markers(self, store: Store) -> Markers:
        return Markers(store, self.markers_collection)

    def _chain(self) -> scripts.Chain:
        return scripts.load_chain(self.migrations_path)

    def _ttl(self) -> float:
        if self.lock_ttl is not None:
            return self.lock_ttl
        try:
            ttl = float(os.environ.get("FSMIGRATE_LOCK_TTL", DEFAULT_TTL))
        except ValueError as exc:
            raise UsageError(f"FSMIGRATE_LOCK_TTL: {exc}") from exc
        if not ttl > 0:
            raise UsageError(f"FSMIGRATE_LOCK_TTL must be a positive number of seconds, got {ttl}")
        return ttl


# ---- results -------------------------------------------------------------------------------


@dataclass
class UpgradeResult:
    """What one upgrade / rerun / apply / restore did: its runs in order. `state` is the
    open state file, for the reports (`fsmigrate.report.upgrade_chunks`)."""

    invocation: str
    target: Target
    dry_run: bool
    runs: list[RunResult]
    state: State = field(repr=False)
    plan: Optional[planfile.Written] = None
    warnings: list[str] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    @property
    def committed(self) -> int:
        return sum(r.committed for r in self.runs)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.runs)

    @property
    def planned(self) -> int:
        return sum(r.planned for r in self.runs)

    def operations(self, run_id: str) -> Iterator[RunOperation]:
        """One of these runs' operations in order, as (kind, path, status). A dry-run's
        are read from this result's open state file (the file itself keeps only its counts
        unless it wrote a plan)."""
        return _operations(self.state, run_id)


@dataclass(frozen=True)
class StatusRow:
    revision: str
    description: str
    state: str  # applied / applied elsewhere / pending / applied (script changed) / ...
    applied_at: Optional[str]
    run_id: Optional[str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StatusReport:
    target: Target
    revisions: list[StatusRow]
    markers_read: bool


@dataclass(frozen=True)
class Finding:
    revision: str
    problem: str  # changed / missing / no marker / changed (repeatable)
    message: str
    applied_checksum: Optional[str] = None
    script_checksum: Optional[str] = None
    blocking: bool = True  # False: a repeatable script's new version (its next run records it)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class RunAudit:
    """One run with its operations, streamed from the state file on demand."""

    run: RunResult
    state: State = field(repr=False)

    def chunks(self, fmt: str) -> Iterator[str]:
        """text, json, jsonl (with before- and after-images), markdown or html."""
        if fmt == "markdown":
            return audit_report.markdown(self.state, self.run.run_id, str(self.state.path))
        if fmt == "html":
            return audit_report.html(self.state, self.run.run_id, str(self.state.path))
        return report.audit_run_chunks(self.state, self.run.run_id, fmt)

    def before_images(self) -> Iterator[str]:
        """The run's before-images as JSON lines (the --export form); ArchiveUnavailable
        when its archive was pruned or kept paths only."""
        gone = _archive_gone(self.state.run(self.run.run_id), "export")
        if gone is not None:
            raise gone
        return audit_report.export_before_images(self.state, self.run.run_id)

    def operations(self) -> Iterator[RunOperation]:
        """The run's operations in order, as (kind, path, status)."""
        return _operations(self.state, self.run.run_id)


class RunOperation(NamedTuple):
    """One operation of a run: status `planned` for a dry-run, `committed` / `skipped` /
    `failed` / `pending` for an apply."""

    kind: str
    path: str
    status: str


def _operations(state: State, run_id: str) -> Iterator[RunOperation]:
    for row in state.ops(run_id):
        yield RunOperation(row["kind"], row["path"], row["status"])


@dataclass(frozen=True)
class Marked:
    """A revision recorded as applied without running it (stamp, resolve)."""

    revision: str
    run_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class LockHolder:
    holder: dict[str, Any]
    description: str


# ---- the shared steps ----------------------------------------------------------------------


def _prepare(cfg: Config) -> tuple[Target, scripts.Chain, State]:
    """Target, scripts and state file, refusing scripts changed since they were applied."""
    target = cfg.target()
    chain = cfg._chain()
    state = State.open(cfg.state_path)
    changed = drift.blocking(_findings(cfg, chain, target, state))
    if changed:
        raise ScriptsChanged(changed[0]["message"] + "; see `fsmigrate verify`")
    return target, chain, state


def _findings(
    cfg: Config,
    chain: scripts.Chain,
    target: Target,
    state: Optional[State],
    markers: Optional[dict[str, dict[str, Any]]] = None,
) -> list[dict[str, Any]]:
    local = state.applied(target.project, target.database) if state else {}
    return drift.findings(
        chain, local, markers, migrations=cfg.migrations_path, state_path=cfg.state_path
    )


def _adopt_markers(
    cfg: Config, chain: scripts.Chain, target: Target, state: State, markers: Markers
) -> None:
    """Record locally what the database's markers say is applied; refuse a marker whose
    script differs from ours (like a local checksum drift)."""
    found = markers.read()
    changed = [
        f
        for f in drift.blocking(_findings(cfg, chain, target, None, found))
        if f["problem"] != "no marker"
    ]
    if changed:
        raise ScriptsChanged(changed[0]["message"] + "; see `fsmigrate verify`")
    local = state.applied(target.project, target.database)
    for revision, marker in sorted(found.items()):
        if revision not in local:
            state.adopt_marker(project=target.project, database=target.database, marker=marker)


@contextlib.contextmanager
def _holding_lease(
    cfg: Config, store: Store, command: str, enabled: bool, warnings: list[str]
) -> Iterator[Optional[Lease]]:
    if not enabled:
        yield None
        return
    lease = Lease(store, command, ttl=cfg._ttl()).acquire()
    try:
        if lease.took_over:
            warnings.append(lease.took_over)
        testhooks.reached("after-lock")
        yield lease
    finally:
        lease.release()


def _snapshot(as_of: Union[None, str, dt.datetime]) -> Optional[dt.datetime]:
    """`as_of` as the instant plans read at: not in the future, and not older than the
    longest Firestore keeps versions (7 days, with point-in-time recovery; without it a
    read older than 1 hour is refused by Firestore, in one line too)."""
    if as_of is None:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    if isinstance(as_of, dt.datetime):
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.timezone.utc)
    else:
        try:
            when = parse_instant(as_of, now)
        except ValueError as exc:
            raise UsageError(f"--as-of: {exc}") from None
    when = when.astimezone(dt.timezone.utc)
    if when > now:
        raise UsageError(f"--as-of {rfc3339(when)} is in the future; Firestore reads the past")
    if now - when > VERSIONS_KEPT_PITR:
        raise UsageError(
            f"--as-of {rfc3339(when)} is older than Firestore keeps versions "
            f"({VERSIONS_KEPT_PITR.days} days with point-in-time recovery, "
            f"{int(VERSIONS_KEPT.total_seconds() // 3600)} hour without); pick a later time"
        )
    return when


def _confirm(
    target: Target, todo: Sequence[scripts.Script], dry_run: bool, confirm: Optional[Confirm]
) -> None:
    if not todo or dry_run or target.is_emulator:
        return
    revs = ", ".join(s.revision for s in todo)
    _ask(confirm, f"Apply {len(todo)} migration(s) ({revs}) to {target.describe()}?")


def _ask(confirm: Optional[Confirm], prompt: str) -> None:
    """The operator's yes, through `confirm`; refused without one, aborted on a no."""
    if confirm is None:
        raise ConfirmationRequired(prompt)
    if not confirm(prompt):
        raise Aborted("declined at the prompt")


def _limits(
    cfg: Config, max_rate: Optional[float], ramp: Optional[bool], ramp_start: Optional[float]
) -> traffic.Limits:
    """The traffic limits of a writing command, checked before anything is written."""
    return traffic.resolve(
        emulator=cfg.target().is_emulator, max_rate=max_rate, ramp=ramp, ramp_start=ramp_start
    )


def _execute(
    cfg: Config,
    target: Target,
    chain: scripts.Chain,
    state: State,
    select: Callable[[], list[scripts.Script]],
    *,
    command: str,
    dry_run: bool,
    batch_size: int,
    batch_bytes: int,
    concurrency: int,
    limits: traffic.Limits,
    progress: Optional[Progress],
    confirm: Optional[Confirm],
    kind: str = "upgrade",
    source: Optional[str] = None,
    plan_out: Optional[PathLike] = None,
    plan_digest: Optional[str] = None,
    distributor: Optional[Distributor] = None,
    as_of: Optional[dt.datetime] = None,
    read_time_of: Optional[Callable[[str], Optional[str]]] = None,
) -> UpgradeResult:
    """Run (or plan) the selected migrations in order; the one path for every command
    that writes. An apply holds the target's lease from before it reads what is pending
    until it is done, so two runners never both apply; its commits wait on one limiter
    (`limits`), shared by its migrations and commit threads. A failure is raised with the
    result so far attached (`exc.partial`), so the caller can still report it."""
    todo = select()
    if as_of is not None and not dry_run and len(todo) > 1:
        raise UsageError(
            f"--as-of plans every migration at one instant, so migration {todo[1].revision} "
            f"would not see what {todo[0].revision} writes; apply them one at a time "
            f"(--to {todo[0].revision}), or drop --as-of"
        )
    if distributor is not None:
        for script in todo:  # a script Beam cannot split is refused before anything
            distributor.check(script)
    _confirm(target, todo, dry_run, confirm)
    store = cfg._store(target)
    markers = cfg._markers(store)
    invocation = new_id()
    warnings: list[str] = []
    result = UpgradeResult(invocation, target, dry_run, [], state, warnings=warnings)
    try:
        with _holding_lease(cfg, store, command, bool(todo) and not dry_run, warnings) as lease:
            _adopt_markers(cfg, chain, target, state, markers)
            todo = select()  # what was applied meanwhile, here or elsewhere, is not pending
            runner = Runner(
                store,
                state,
                chain,
                batch_size=batch_size,
                progress=progress,
                guard=lease.check if lease else None,
                concurrency=concurrency,
                markers=markers,
                batch_bytes=batch_bytes,
                limits=limits,
                traffic=None if dry_run else traffic.make(limits),
                capture_writes=plan_out is not None,
                distributor=distributor,
                lease_holder=lease.holder_id if lease else None,
                lease_ttl=lease.ttl if lease else DEFAULT_TTL,
                as_of=as_of,
            )
            for script in todo:
                runner.run(
                    script,
                    dry_run=dry_run,
                    invocation=invocation,
                    kind=kind,
                    source=source,
                    plan_digest=plan_digest,
                    read_time=read_time_of(script.revision) if read_time_of else None,
                )
            if plan_out is not None:
                result.plan = planfile.write_plan(
                    state, state.runs_of(invocation), target, invocation, Path(plan_out)
                )
                state.set_plan_digest(state.runs_of(invocation), result.plan.digest)
    except FsMigrateError as exc:
        result.runs = _runs_of(state, invocation)
        exc.partial = result  # type: ignore[attr-defined]
        raise
    result.runs = _runs_of(state, invocation)
    return result


RUNNERS = ("local", "beam")


def _distributor(
    runner: str, workers: int, beam_options: Optional[Mapping[str, str]]
) -> Optional[Distributor]:
    """None for the local runner; the Beam coordinator for `runner="beam"`."""
    if runner not in RUNNERS:
        raise UsageError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if runner == "local":
        if beam_options:
            raise UsageError("--beam-option needs --runner beam")
        return None
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    from fsmigrate import beam

    beam.require()
    from fsmigrate.beam.coordinator import BeamDistributor

    options = dict(beam_options or {})
    journal = options.pop("journal", None)
    return BeamDistributor(workers=workers, options=options, journal_root=journal)


def _runs_of(state: State, invocation: str) -> list[RunResult]:
    return [RunResult.from_row(state, state.run(r)) for r in state.runs_of(invocation)]


# ---- commands that write -------------------------------------------------------------------


def upgrade(
    cfg: Config,
    *,
    dry_run: bool = False,
    to: Optional[str] = None,
    batch_size: int = MAX_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    concurrency: int = 1,
    plan_out: Optional[PathLike] = None,
    max_rate: Optional[float] = None,
    ramp: Optional[bool] = None,
    ramp_start: Optional[float] = None,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
    runner: str = "local",
    workers: int = 2,
    beam_options: Optional[Mapping[str, str]] = None,
    as_of: Union[None, str, dt.datetime] = None,
) -> UpgradeResult:
    """Run the pending migrations in order (or plan them with `dry_run`); with `plan_out`
    (dry-run only), also write the reviewed plan file for `apply_plan`.

    Every plan reads the database at one instant (its snapshot, recorded with the run and
    in the plan file): `as_of` (an RFC 3339 time, an age like "30m", or a datetime; at
    most the 7 days Firestore keeps versions with point-in-time recovery, 1 hour
    without), by default the moment the plan starts.

    `runner="beam"` plans and applies each migration on an Apache Beam pipeline
    (`workers` processes of the DirectRunner, or e.g. `beam_options={"runner":
    "DataflowRunner", ...}`; `journal`: where workers write their batch files, default
    beside the state file); its scripts must be distributable (fsmigrate.distributed).

    Traffic (every writing function takes the same): `max_rate` caps the operations per
    second of all commits together; `ramp` (default: on against a real project, off on the
    emulator) starts at `ramp_start` (default 500, or FSMIGRATE_RAMP) and grows 50% every
    5 minutes. A dry-run estimates the apply's reads, writes, deletes, archive bytes and
    time at those limits."""
    if plan_out is not None and not dry_run:
        raise UsageError(
            "--plan-out needs --dry-run (a plan is reviewed, then applied with `fsmigrate apply`)"
        )
    limits = _limits(cfg, max_rate, ramp, ramp_start)
    snapshot = _snapshot(as_of)
    distributor = _distributor(runner, workers, beam_options)
    target, chain, state = _prepare(cfg)
    if to is not None:
        chain.get(to)

    def pending() -> list[scripts.Script]:
        return chain.pending(set(state.applied(target.project, target.database)), to)

    return _execute(
        cfg,
        target,
        chain,
        state,
        pending,
        command="upgrade",
        dry_run=dry_run,
        batch_size=batch_size,
        batch_bytes=batch_bytes,
        concurrency=concurrency,
        limits=limits,
        progress=progress,
        confirm=confirm,
        plan_out=plan_out,
        distributor=distributor,
        as_of=snapshot,
    )


def rerun(
    cfg: Config,
    revision: str,
    *,
    dry_run: bool = False,
    batch_size: int = MAX_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    concurrency: int = 1,
    max_rate: Optional[float] = None,
    ramp: Optional[bool] = None,
    ramp_start: Optional[float] = None,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
    runner: str = "local",
    workers: int = 2,
    beam_options: Optional[Mapping[str, str]] = None,
    as_of: Union[None, str, dt.datetime] = None,
) -> UpgradeResult:
    """Run one `repeatable = True` migration again, applied or not (traffic, runner and
    `as_of` options as for `upgrade`)."""
    limits = _limits(cfg, max_rate, ramp, ramp_start)
    snapshot = _snapshot(as_of)
    distributor = _distributor(runner, workers, beam_options)
    target, chain, state = _prepare(cfg)
    script = chain.get(revision)
    if not script.repeatable:
        raise UsageError(
            f"revision {revision} ({script.path}) is not repeatable; only scripts "
            "with `repeatable = True` can be rerun"
        )

    def todo() -> list[scripts.Script]:
        applied = set(state.applied(target.project, target.database))
        before = [s.revision for s in chain.pending(applied, revision) if s.revision != revision]
        if before:
            raise UsageError(
                f"revision(s) {', '.join(before)} come before {revision} and are "
                f"not applied; run `fsmigrate upgrade --to {before[-1]}` first"
            )
        return [script]

    return _execute(
        cfg,
        target,
        chain,
        state,
        todo,
        command=f"rerun {revision}",
        kind="rerun",
        as_of=snapshot,
        dry_run=dry_run,
        batch_size=batch_size,
        batch_bytes=batch_bytes,
        concurrency=concurrency,
        limits=limits,
        progress=progress,
        confirm=confirm,
        distributor=distributor,
    )


def apply_plan(
    cfg: Config,
    path: PathLike,
    *,
    batch_size: int = MAX_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    concurrency: int = 1,
    max_rate: Optional[float] = None,
    ramp: Optional[bool] = None,
    ramp_start: Optional[float] = None,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Apply a reviewed plan file exactly: verified whole before any write (counts,
    digests, each line against its `Write`), then its operations, nothing re-planned
    (traffic options as for `upgrade`)."""
    plan_path = Path(path)
    if not plan_path.is_file():
        raise UsageError(f"plan file {plan_path} does not exist")
    limits = _limits(cfg, max_rate, ramp, ramp_start)
    plan = planfile.PlanFile(plan_path)
    try:
        target, chain, state = _prepare(cfg)
        plan.verify(max_write_bytes=batch_bytes)
        select = drift.plan_scripts(plan, target, chain, state)
        return _execute(
            cfg,
            target,
            chain,
            state,
            select,
            command=f"apply {plan_path.name}",
            kind="plan",
            source=plan.plan_id,
            plan_digest=plan.digest,
            read_time_of=plan.read_time,
            dry_run=False,
            batch_size=batch_size,
            batch_bytes=batch_bytes,
            concurrency=concurrency,
            limits=limits,
            progress=progress,
            confirm=confirm,
        )
    finally:
        plan.close()


def restore(
    cfg: Config,
    run_id: str,
    *,
    docs: Sequence[str] = (),
    dry_run: bool = False,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_rate: Optional[float] = None,
    ramp: Optional[bool] = None,
    ramp_start: Optional[float] = None,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Write run `run_id`'s archived before-images back where the document does not exist
    now (forward: a new audited run; existing documents are left alone and listed;
    traffic options as for `upgrade`)."""
    limits = _limits(cfg, max_rate, ramp, ramp_start)
    target = cfg.target()
    state = State.open(cfg.state_path)
    source = state.run(run_id)
    if source["mode"] != "apply":
        raise UsageError(f"run {run_id} is a {source['mode']}: it changed nothing to restore")
    if (source["project"], source["database"]) != (target.project, target.database):
        raise UsageError(
            f"run {run_id} changed {source['project']}/{source['database']}, not "
            f"{target.project}/{target.database}; pass that --project/--database"
        )
    warnings = _restorable(state, source, docs)  # refuses a pruned or paths-only archive
    script = restore_script(state, source, docs)
    result = _execute(
        cfg,
        target,
        cfg._chain(),
        state,
        lambda: [script],
        command=f"restore {run_id}",
        kind="restore",
        dry_run=dry_run,
        batch_size=MAX_BATCH,
        batch_bytes=batch_bytes,
        concurrency=1,
        limits=limits,
        progress=progress,
        confirm=confirm,
    )
    result.warnings.extend(warnings)
    return result


def prune(
    cfg: Config, *, before: str, dry_run: bool = False, confirm: Optional[Confirm] = None
) -> PruneResult:
    """Drop the before-images and journaled writes of the target's runs finished before
    `before` (an age such as '90d', or a date): runs, counts, checksums, notes and paths
    stay; the prune is itself a run; the values are overwritten and the file rebuilt, so
    they are gone from it and the space is given back. Runs whose journal is still needed
    are kept (listed). `confirm(prompt)` is asked first; without it, refused."""
    target = cfg.target()
    try:
        cutoff = parse_before(before)
    except ValueError as exc:
        raise UsageError(f"--before: {exc}") from exc
    if cutoff > dt.datetime.now(dt.timezone.utc):
        raise UsageError(f"--before {before} is in the future")
    if not cfg.state_path.exists():
        raise StateNotFound(cfg.state_path)

    def ask(prompt: str) -> None:
        _ask(confirm, prompt)

    return _prune(
        State.open(cfg.state_path),
        target.project,
        target.database,
        cutoff,
        dry_run=dry_run,
        confirm=ask,
    )


def _mark_by_hand(
    cfg: Config, revision: str, reason: str, kind: str, through: bool
) -> list[Marked]:
    target, chain, state = _prepare(cfg)
    chain.get(revision)  # an unknown revision is a usage error
    if not reason.strip():
        raise UsageError("--reason must say why")
    store = cfg._store(target)
    markers = cfg._markers(store)
    done: list[Marked] = []
    with _holding_lease(cfg, store, f"{kind} {revision}", True, []):
        _adopt_markers(cfg, chain, target, state, markers)
        applied = set(state.applied(target.project, target.database))
        if revision in applied:
            raise UsageError(f"revision {revision} is already applied")
        todo = chain.pending(applied, revision)
        if not through and todo[:-1]:
            raise UsageError(
                f"revision(s) {', '.join(s.revision for s in todo[:-1])} come "
                f"before {revision} and are not applied; resolve or apply them "
                "first"
            )
        for item in todo:
            run_id = state.record_by_hand(
                project=target.project,
                database=target.database,
                script=item,
                reason=reason,
                invocation=new_id(),
                kind=kind,
            )
            markers.write(
                revision=item.revision,
                checksum=item.checksum,
                description=item.description,
                run_id=run_id,
                kind=kind,
                reason=reason,
            )
            done.append(Marked(item.revision, run_id, kind, reason))
    return done


def stamp(cfg: Config, revision: str, *, reason: str) -> list[Marked]:
    """Record `revision` and every revision before it as applied without running them
    (markers in the database and records in the state file), to adopt a database
    changed by hand."""
    return _mark_by_hand(cfg, revision, reason, "stamp", through=True)


def resolve(cfg: Config, revision: str, *, reason: str) -> Marked:
    """Mark a failed or interrupted migration applied without running it (audited)."""
    return _mark_by_hand(cfg, revision, reason, "resolve", through=False)[0]


def break_lock(cfg: Config) -> Optional[LockHolder]:
    """Remove the target's lock whoever holds it; who held it, or None."""
    holder = _break_lock(cfg._store())
    return LockHolder(holder, _describe(holder)) if holder is not None else None


def new(cfg: Config, message: str) -> Path:
    """Write the next migration script from a template; its path."""
    return scripts.new_script(cfg.migrations_path, message)


# ---- commands that read --------------------------------------------------------------------


def status(cfg: Config, *, local: bool = False) -> StatusReport:
    """Each revision as applied, applied elsewhere, pending, or applied but changed or
    missing. Reads the markers in the target database unless `local`; never creates
    the state file."""
    target = cfg.target()
    chain = cfg._chain()
    state = State.open_readonly(cfg.state_path)
    applied = state.applied(target.project, target.database) if state else {}
    markers = None if local else cfg._markers(cfg._store(target)).read()
    rows = drift.status_rows(chain, applied, markers)
    return StatusReport(target, [StatusRow(**r) for r in rows], markers is not None)


def verify(cfg: Config, *, local: bool = False) -> list[Finding]:
    """Applied scripts edited or missing since (state file and markers), and local
    records without a marker. Empty when all is well."""
    target = cfg.target()
    markers = None if local else cfg._markers(cfg._store(target)).read()
    found = _findings(cfg, cfg._chain(), target, State.open_readonly(cfg.state_path), markers)
    return [Finding(**f) for f in found]


def history(cfg: Config, limit: Optional[int] = None) -> list[RunResult]:
    """The runs recorded for the target, newest first."""
    target = cfg.target()
    state = State.open_readonly(cfg.state_path)
    if state is None:
        return []
    return [
        RunResult.from_row(state, r) for r in state.runs(target.project, target.database, limit)
    ]


def audit(
    cfg: Config,
    run_id: Optional[str] = None,
    *,
    since: Optional[str] = None,
    limit: Optional[int] = None,
) -> Union[list[RunResult], RunAudit]:
    """Every recorded run, newest first (`since`: '7d', '12h'...), or one run with its
    operations. Read-only: never creates the state file."""
    state = State.open_readonly(cfg.state_path)
    if run_id is not None:
        if state is None:
            raise RunNotFound(run_id)
        return RunAudit(RunResult.from_row(state, state.run(run_id)), state)
    if state is None:
        return []
    rows = state.runs(limit=limit)
    if since:
        try:
            cutoff = dt.datetime.now(dt.timezone.utc) - times.parse_window(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from exc
        rows = [r for r in rows if _parse_time(r["started_at"]) >= cutoff]
    return [RunResult.from_row(state, r) for r in rows]


def check(cfg: Config, name: str, **options: Any) -> CheckResult:
    """Run the health check `name` (a plugin of the entry-point group `fsmigrate.checks`)
    against the target with `options` (the check's declared options; text values such
    as a window '1h' are parsed as on the command line)."""
    return checks.run(cfg._store, name, options)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_names() -> list[str]:
    """The installed checks."""
    return checks.available()


def lint(cfg: Config, paths: Sequence[PathLike] = ()) -> LintReport:
    """Static checks of the migration scripts (the migrations directory, or `paths`: files
    and directories), without importing them or reaching Firestore. `report.ok` is False
    when there is an error; warnings alone leave it True."""
    return lint_paths([Path(p) for p in paths] or [cfg.migrations_path])
