"""The public entry points: one function per command (like alembic's `command` module).

The command line is a thin skin over these; a scheduled job, an orchestrator task or a
test harness calls them directly:

    from fsmigrate import api

    cfg = api.Config(project="my-proj", state="/var/lib/fsmigrate/state.db")
    options = api.RunOptions(max_rate=200, batch_size=100)
    result = api.rerun(cfg, "0001", options, confirm=lambda prompt: True)
    health = api.check(cfg, "heartbeats", max_docs=50)

A writing function takes the run options as one `RunOptions` (the command line's
--batch-size, --max-rate, --runner...; None: from the config, else the default), checked
when it is made; the config carries the defaults a config file gave (`Config.run`).

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
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from fsmigrate import checks, times
from fsmigrate import config as config_file
from fsmigrate.beam import journal as beam_journal
from fsmigrate.checks import CheckResult
from fsmigrate.config import ConfigError, Settings
from fsmigrate.engine import control as live
from fsmigrate.engine import hooks as run_hooks
from fsmigrate.engine import testhooks, tracing, traffic
from fsmigrate.engine.batching import (
    DEFAULT_BATCH_BYTES,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MIN_BATCH_BYTES,
)
from fsmigrate.engine.doctor import DoctorReport, credentials_source, diagnose, principal_of
from fsmigrate.engine.lease import DEFAULT_TTL, Lease, lock_path, stale_reason
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
    ScriptError,
    ScriptsChanged,
    StateNotFound,
    UsageError,
)
from fsmigrate.firestore.admin import admin_client
from fsmigrate.firestore.connection import Connection, Pool
from fsmigrate.firestore.store import (
    RetryPolicy,
    Store,
    Target,
    parse_patience,
    target_from_env,
)
from fsmigrate.lint import Report as LintReport
from fsmigrate.lint import lint_paths
from fsmigrate.options import ResolvedOptions, RunOptions
from fsmigrate.report import audit as audit_report
from fsmigrate.report import runs as report
from fsmigrate.scripts import drift, planfile
from fsmigrate.scripts import loader as scripts
from fsmigrate.scripts import rebase as rebasing
from fsmigrate.scripts import restore as restore_docs
from fsmigrate.scripts.archive import ArchiveUnavailable
from fsmigrate.scripts.archive import unavailable as _archive_gone
from fsmigrate.scripts.restore import check as _restorable
from fsmigrate.scripts.restore import restore_script
from fsmigrate.state.database import State, new_id
from fsmigrate.state.journals import RECORDED
from fsmigrate.state.prune import PruneResult, parse_before
from fsmigrate.state.prune import prune as _prune
from fsmigrate.state.runs import RunResult
from fsmigrate.words import plural

__all__ = [
    "Config",
    "Connection",
    "close",
    "RunOptions",
    "ResolvedOptions",
    "Settings",
    "ConfigError",
    "CheckReport",
    "Rebased",
    "config",
    "status_check",
    "rebase",
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
    "doctor",
    "DoctorReport",
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
    "control",
    "ControlSent",
    "RunningRun",
    "UnimportedJournal",
    "CONTROL_ACTIONS",
]
CONTROL_ACTIONS = live.ACTIONS
DEFAULT_MARKERS = DEFAULT_ROOT

Confirm = Callable[[str], bool]
PathLike = Union[str, "os.PathLike[str]"]


# ---- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Where to work, and how to reach Firestore.

    A missing project comes from FSMIGRATE_PROJECT or GOOGLE_CLOUD_PROJECT, as on the
    command line. The emulator is used when FIRESTORE_EMULATOR_HOST is set. What
    `connection` leaves None comes from FSMIGRATE_ENDPOINT, FSMIGRATE_CREDENTIALS,
    FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT and GOOGLE_CLOUD_QUOTA_PROJECT, else the
    application default credentials on firestore.googleapis.com.
    `Config.from_file` fills all of it from a config file and one of its environments.

    Args:
        project: The Google Cloud project.
        database: The Firestore database id.
        state: The SQLite state file.
        migrations: The directory of migration scripts.
        markers_collection: The top-level collection of fsmigrate's own documents in the
            target: markers of applied revisions, the lock.
        lock_ttl: Seconds a dead runner's lock lasts. None: FSMIGRATE_LOCK_TTL, else 300.
        patience: How long to retry Firestore without progress, in seconds or as a
            duration ("10m", "90s", "1h"). None: FSMIGRATE_PATIENCE, else 10 minutes.
        emulator_host: The emulator's `host:port`, the same as `connection.emulator_host`.
        connection: How to reach Firestore: the endpoint, a credentials file, a service
            account to impersonate, the quota project.
        environment: The config file's environment this config was made from.
        always_confirm: Every apply asks, even on the emulator.
        create_state_dir: Make the state file's missing directories. False: a missing
            directory is refused, since a typo would start a fresh audit trail.
        run: The run options a writing function uses where its own `RunOptions` says
            nothing: a config file's batch-size, max-rate, runner...
        settings: The resolved settings this config was made from, with their sources.
    """

    project: Optional[str] = None
    database: Optional[str] = "(default)"
    state: PathLike = "state.db"
    migrations: PathLike = "migrations"
    markers_collection: str = DEFAULT_ROOT
    lock_ttl: Optional[float] = None
    patience: Union[float, str, None] = None  # seconds, or a duration: "10m", "90s", "1h"
    emulator_host: Optional[str] = None  # the same as connection.emulator_host
    connection: Connection = field(default_factory=Connection)
    environment: Optional[str] = None
    always_confirm: bool = False
    create_state_dir: bool = False  # True: make the state file's missing directories
    run: RunOptions = field(default_factory=RunOptions)
    settings: Optional[Settings] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.markers_collection or "/" in self.markers_collection:
            raise UsageError(
                f"markers collection {self.markers_collection!r} must be a top-level collection id"
            )
        if self.patience is not None:  # kept as seconds
            object.__setattr__(self, "patience", parse_patience(self.patience))
        if not isinstance(self.connection, Connection):
            raise UsageError(
                f"Config.connection must be an api.Connection, got {self.connection!r}"
            )
        own = self.connection.emulator_host
        if self.emulator_host and own and self.emulator_host != own:
            raise UsageError(
                f"emulator_host {self.emulator_host!r} and connection.emulator_host {own!r} "
                "differ; give one"
            )
        if self.emulator_host and not own:
            object.__setattr__(
                self, "connection", replace(self.connection, emulator_host=self.emulator_host)
            )
        object.__setattr__(self, "emulator_host", self.connection.emulator_host)
        if isinstance(self.run, Mapping):  # {"batch_size": 100}: the same, checked
            object.__setattr__(self, "run", RunOptions.from_mapping(self.run))
        elif not isinstance(self.run, RunOptions):
            raise UsageError(f"Config.run must be an api.RunOptions, got {self.run!r}")

    @classmethod
    def from_file(
        cls,
        path: Optional[PathLike] = None,
        *,
        env: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        **overrides: Any,
    ) -> Config:
        """The config of `path` (a pyproject.toml with [tool.fsmigrate], or an
        fsmigrate.toml; default: FSMIGRATE_CONFIG, else the nearest one from the current
        directory up) and its environment `env` (default: FSMIGRATE_ENV). `overrides`
        (project=..., max_rate=...) rank as flags do; then the environment variables
        (`environ`, default os.environ), the environment's keys, the file's defaults.
        A bad file, key or environment is a ConfigError (exit 2)."""
        given = config_file.Given()
        for name, value in overrides.items():
            key = config_file.KEYS.get(name.replace("_", "-"))
            if key is None:
                raise UsageError(f"Config.from_file: unknown setting {name!r}")
            if value is not None:
                given.flags[key.name] = config_file.coerce(key, value, f"{name}=")
                given.flag_names[key.name] = f"{name}="
        settings = config_file.load(
            Path(path) if path is not None else None,
            env,
            given,
            os.environ if environ is None else environ,
            env_source="env=" if env is not None else None,
        )
        return cls.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Config:
        """The config `settings` resolved (config.load)."""
        return cls(
            project=settings["project"],
            database=settings["database"],
            state=settings["state"],
            migrations=settings["migrations"],
            markers_collection=settings["markers-collection"],
            lock_ttl=settings["lock-ttl"],
            patience=settings["patience"],
            connection=Connection(
                endpoint=settings["endpoint"],
                credentials=settings["credentials"],
                impersonate_service_account=settings["impersonate-service-account"],
                quota_project=settings["quota-project"],
                emulator_host=settings["emulator-host"],
            ),
            environment=settings.environment,
            always_confirm=settings.always_confirm,
            create_state_dir=bool(settings["create-state-dir"]),
            run=RunOptions.from_mapping(settings.run_options()),
            settings=settings,
        )

    def run_options(self, given: Optional[RunOptions] = None) -> ResolvedOptions:
        """The options a writing command runs with: each from `given`, else this
        config's `run`, else fsmigrate's default (resolved once, checked)."""
        if given is not None and not isinstance(given, RunOptions):
            raise UsageError(f"run options must be an api.RunOptions, got {given!r}")
        return (given or RunOptions()).over(self.run).resolved()

    @property
    def state_path(self) -> Path:
        return Path(self.state)

    @property
    def migrations_path(self) -> Path:
        return Path(self.migrations)

    def target(self) -> Target:
        """The database to work on (UsageError without a project, or for connection
        settings that cannot connect: `connect`)."""
        connection = self.connect()
        return replace(
            target_from_env(self.project, self.database), emulator_host=connection.emulator_host
        )

    def connect(self) -> Connection:
        """The connection settings in force: this config's, else the environment
        variables' (Connection.from_environ); checked (an emulator on loopback only, not
        with an endpoint)."""
        return self.connection.over(Connection.from_environ()).check()

    def _open_state(self) -> State:
        """The state file for writing; a directory that does not exist is refused (a typo
        in --state would otherwise start a fresh audit trail) unless `create_state_dir`."""
        folder = self.state_path.parent
        if not folder.exists() and not self.create_state_dir:
            raise UsageError(
                f"the directory of state file {self.state_path} does not exist; check the "
                "path, or pass --create-state-dir to create it"
            )
        return State.open(self.state_path)

    def _store(self, target: Optional[Target] = None) -> Store:
        """A Store of the target, on this process's channels to it (`close`)."""
        patience = float(self.patience) if self.patience is not None else None
        target = target or self.target()
        channels = _CHANNELS.get(self.connect(), target.project, target.database)
        store = Store(target, policy=RetryPolicy.from_env(patience), channels=channels)
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


# One set of channels per target and connection, shared by the commands of this process.
_CHANNELS = Pool()


def close() -> int:
    """Close the Firestore channels this process's commands opened.

    The command line does at exit. A long-lived program that is done with Firestore may
    too: the next command opens new ones.

    Returns:
        How many targets' channels were closed.
    """
    return _CHANNELS.close()


# ---- results -------------------------------------------------------------------------------


@dataclass
class UpgradeResult:
    """What one upgrade, rerun, apply or restore did: its runs in order.

    Attributes:
        invocation: The id shared by the runs of this command.
        target: The project and database.
        dry_run: Whether it was a dry-run.
        runs: One record per migration run, in order.
        state: The open state file, for the reports (`fsmigrate.report.upgrade_chunks`).
        plan: The plan file written with `plan_out`, if any.
        warnings: What should not stop the command but must be seen.
    """

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
    """One revision's state on the target.

    Attributes:
        revision: The migration's revision.
        description: The first line of its docstring.
        state: `applied`, `applied elsewhere`, `pending`, `failed`, `interrupted`,
            `running`, or applied but changed or missing.
        applied_at: When it was applied, if it was.
        run_id: The run that applied it, or that failed.
    """

    revision: str
    description: str
    state: str  # applied / applied elsewhere / pending / failed / interrupted / ...
    applied_at: Optional[str]
    run_id: Optional[str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunningRun:
    """The run holding the target's lock, as its lock and control documents show it.

    The progress is as the run last published it, every few seconds.

    Attributes:
        holder: Who holds the lock: operator@host, pid, command, since when.
        command: The command that runs.
        run_id: The run.
        revision: The migration it runs.
        mode: `apply` or `dry-run`.
        operations: Operations planned so far.
        batches: Batches so far.
        rate: The limit in force, in operations per second. None: unlimited.
        paused: A pause was asked.
        paused_seen: The run has taken the pause.
        stopping: The reason of a stop sent and not yet taken.
        requested_rate: A rate sent with `control rate`.
        updated_at: When the run last published its progress.
        controls: The control events sent so far.
        stale: Why the lock may be taken over, when its holder is gone.
    """

    holder: str  # who: operator@host pid, command, since
    command: str
    run_id: Optional[str]
    revision: Optional[str]
    mode: Optional[str]
    operations: Optional[int]
    batches: Optional[int]
    rate: Optional[float]  # the limit in force (ops/s), None: unlimited
    paused: bool
    paused_seen: bool
    stopping: Optional[str]
    requested_rate: Optional[float]
    updated_at: Optional[str]
    controls: list[dict[str, Any]] = field(default_factory=list)
    stale: Optional[str] = None  # why the lock may be taken over (its holder is gone)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class UnimportedJournal:
    """A Beam apply whose coordinator stopped before it imported its workers' journal.

    What the workers committed is not in the state file yet. The next command that takes
    the target's lease (upgrade, rerun, apply, restore, stamp, resolve) imports it first.

    Attributes:
        run_id: The run.
        revision: Its migration.
        status: The run's status as recorded; `running` when its coordinator died.
        location: The journal directory: local, or a Beam FileSystems URL.
    """

    run_id: str
    revision: str
    status: str  # the run's as recorded (`running`: its coordinator died)
    location: str  # the journal directory (local, or a Beam FileSystems URL)

    def message(self) -> str:
        return (
            f"Beam run {self.run_id} (revision {self.revision}, {self.status}) left its "
            f"workers' journal unimported at {self.location}: what they committed is not in "
            "the state file yet; run the same command again (or any command that writes to "
            "this target) to import it first"
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "message": self.message()}


def _alive(running: Optional[RunningRun]) -> Optional[str]:
    """The run id of the run holding the lock, unless its holder is gone (a stale lock)."""
    return running.run_id if running is not None and running.stale is None else None


def _unimported(
    state: Optional[State],
    target: Target,
    running: Optional[str] = None,
    store: Optional[Store] = None,
) -> list:
    """The target's Beam journals not imported yet, but the one of the run `running`: the
    state file's, and with `store` those the database records for runs the state file
    does not know (another operator's)."""
    found = [
        UnimportedJournal(r["run_id"], r["revision"], r["status"], r["location"])
        for r in (state.open_journals(target.project, target.database) if state else [])
        if r["state"] == RECORDED and r["run_id"] != running
    ]
    if store is not None:
        for run_id, record in sorted(beam_journal.published(store).items()):
            if run_id != running and (state is None or state.journal(run_id) is None):
                revision, location = record.get("revision", "?"), record.get("location", "?")
                found.append(UnimportedJournal(run_id, revision, "running", location))
    return found


@dataclass
class StatusReport:
    """What `status` found on the target.

    Attributes:
        target: The project and database.
        revisions: One row per revision, in chain order.
        markers_read: Whether the markers in the database were read (not `local`).
        running: The run holding the lock, if any.
        unimported: Beam journals not imported yet.
    """

    target: Target
    revisions: list[StatusRow]
    markers_read: bool
    running: Optional[RunningRun] = None
    unimported: list[UnimportedJournal] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """A problem `verify` found with an applied script.

    Attributes:
        revision: The revision.
        problem: `changed`, `missing`, `no marker` or `changed (repeatable)`.
        message: One line that says it, and the next step.
        applied_checksum: The checksum recorded when it was applied.
        script_checksum: The checksum of the script on disk now.
        blocking: False for a repeatable script's new version, which its next run
            records.
    """

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
    """One run with its operations, read from the state file when asked.

    Attributes:
        run: The run's record.
        state: The open state file its operations and reports are read from.
    """

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
    """One operation of a run.

    Attributes:
        kind: `create`, `set`, `update` or `delete`.
        path: The document's path.
        status: `planned` for a dry-run; `committed`, `skipped`, `failed` or `pending`
            for an apply.
    """

    kind: str
    path: str
    status: str


def _operations(state: State, run_id: str) -> Iterator[RunOperation]:
    for row in state.ops(run_id):
        yield RunOperation(row["kind"], row["path"], row["status"])


@dataclass(frozen=True)
class Marked:
    """A revision recorded as applied without running it (`stamp`, `resolve`).

    Attributes:
        revision: The revision.
        run_id: The run that records it.
        kind: `stamp` or `resolve`.
        reason: Why, as given.
    """

    revision: str
    run_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class ControlSent:
    """A control event sent to the run holding the lock (`control`).

    Attributes:
        action: `pause`, `resume`, `rate` or `stop`.
        value: The rate, or the stop's reason.
        seq: The event's number, from 1, for this run.
        operator: Who sent it.
        host: From where.
        sent_at: When.
        holder: Who holds the lock: the run it is meant for.
    """

    action: str
    value: Optional[str]
    seq: int
    operator: str
    host: str
    sent_at: str
    holder: str  # who holds the lock: the run it is meant for

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LockHolder:
    """Who held the lock `break_lock` removed.

    Attributes:
        holder: The lock document's fields.
        description: Who held it, in one line.
    """

    holder: dict[str, Any]
    description: str


# ---- the shared steps ----------------------------------------------------------------------


def _prepare(cfg: Config) -> tuple[Target, scripts.Chain, State]:
    """Target, scripts and state file, refusing scripts changed since they were applied."""
    target = cfg.target()
    chain = cfg._chain()
    state = cfg._open_state()
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
    cfg: Config, store: Store, state: State, command: str, enabled: bool, warnings: list[str]
) -> Iterator[Optional[Lease]]:
    """The target's lease for the block. Holding it, first bring in what earlier Beam
    applies of the target journaled and never imported (their coordinator died): before
    anything is settled or planned, every operation their workers committed is in the
    state file, under the run that made it (fsmigrate.beam.journal)."""
    if not enabled:
        yield None
        return
    lease = Lease(store, command, ttl=cfg._ttl()).acquire()
    try:
        if lease.took_over:
            warnings.append(lease.took_over)
        testhooks.reached("after-lock")
        warnings.extend(beam_journal.import_orphans(store, state, by=f"`fsmigrate {command}`"))
        yield lease
    finally:
        try:  # the controls were for this holder only; a leftover is ignored anyway
            live.clear(store, lease.holder_id)
        except Exception:
            pass
        lease.release()


def _confirm(
    cfg: Config,
    target: Target,
    todo: Sequence[scripts.Script],
    dry_run: bool,
    confirm: Optional[Confirm],
) -> None:
    """A real project's apply asks; so does every apply to an environment that always
    asks (`always-confirm`), the emulator included."""
    if not todo or dry_run or (target.is_emulator and not cfg.always_confirm):
        return
    revs = ", ".join(s.revision for s in todo)
    env = f" [environment {cfg.environment}]" if cfg.environment else ""
    _ask(confirm, f"Apply {plural(len(todo), 'migration')} ({revs}) to {target.describe()}{env}?")


def _ask(confirm: Optional[Confirm], prompt: str) -> None:
    """The operator's yes, through `confirm`; refused without one, aborted on a no."""
    if confirm is None:
        raise ConfirmationRequired(prompt)
    if not confirm(prompt):
        raise Aborted("declined at the prompt")


def _limits(cfg: Config, opts: ResolvedOptions) -> traffic.Limits:
    """The traffic limits of a writing command, checked before anything is written."""
    return traffic.resolve(
        emulator=cfg.target().is_emulator,
        max_rate=opts.max_rate,
        ramp=opts.ramp,
        ramp_start=opts.ramp_start,
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
    opts: ResolvedOptions,
    limits: traffic.Limits,
    progress: Optional[Progress],
    confirm: Optional[Confirm],
    kind: str = "upgrade",
    source: Optional[str] = None,
    plan_out: Optional[PathLike] = None,
    plan_digest: Optional[str] = None,
    distributor: Optional[Distributor] = None,
    read_time_of: Optional[Callable[[str], Optional[str]]] = None,
) -> UpgradeResult:
    """Run (or plan) the selected migrations in order; the one path for every command
    that writes. An apply holds the target's lease from before it reads what is pending
    until it is done, so two runners never both apply; its commits wait on one limiter
    (`limits`), shared by its migrations and commit threads. A failure is raised with the
    result so far attached (`exc.partial`), so the caller can still report it."""
    as_of = opts.as_of
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
    max_skip_ratio = opts.max_skip_ratio
    budget = live.SkipBudget(max_skip_ratio) if max_skip_ratio is not None else None
    interval = live.interval_from_env()
    hooks = run_hooks.Hooks.load()
    _confirm(cfg, target, todo, dry_run, confirm)
    store = cfg._store(target)
    markers = cfg._markers(store)
    invocation = new_id()
    warnings: list[str] = []
    if dry_run:  # an apply imports them first; a dry-run does not take the lease
        warnings.extend(j.message() for j in _unimported(state, target, store=store))
    result = UpgradeResult(invocation, target, dry_run, [], state, warnings=warnings)
    runner: Optional[Runner] = None
    try:
        with (
            tracing.span(
                f"fsmigrate {command.split()[0]}",
                command=command,
                project=target.project,
                database=target.database,
                dry_run=dry_run,
                invocation=invocation,
            ) as span,
            _holding_lease(
                cfg, store, state, command, bool(todo) and not dry_run, warnings
            ) as lease,
        ):
            _adopt_markers(cfg, chain, target, state, markers)
            todo = select()  # what was applied meanwhile, here or elsewhere, is not pending
            span.set(migrations=len(todo))
            controller = (
                live.Controller(
                    live.Reader(store, lease.holder_id, interval),
                    budget=budget,
                    publish=lease.publish,
                    guard=lease.check,
                )
                if lease is not None
                else None
            )
            runner = Runner(
                store,
                state,
                chain,
                batch_size=opts.batch_size,
                progress=progress,
                guard=lease.check if lease else None,
                concurrency=opts.concurrency,
                markers=markers,
                batch_bytes=opts.batch_bytes,
                limits=limits,
                traffic=None if dry_run else traffic.make(limits),
                capture_writes=plan_out is not None,
                distributor=distributor,
                lease_holder=lease.holder_id if lease else None,
                lease_ttl=lease.ttl if lease else DEFAULT_TTL,
                lease=lease,
                as_of=as_of,
                control=controller,
                hooks=hooks,
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
    except (FsMigrateError, KeyboardInterrupt) as exc:  # the runs so far, for the report
        result.runs = _runs_of(state, invocation)
        if runner is not None:
            warnings.extend(runner.hook_problems)
        setattr(exc, "partial", result)  # noqa: B010 (read by the CLI: getattr)
        raise
    result.runs = _runs_of(state, invocation)
    warnings.extend(runner.hook_problems)
    return result


def _distributor(opts: ResolvedOptions) -> Optional[Distributor]:
    """None for the local runner; the Beam coordinator for `runner="beam"`."""
    if opts.runner == "local":
        return None
    from fsmigrate import beam

    beam.require()
    from fsmigrate.beam.coordinator import BeamDistributor

    options = dict(opts.beam_options)
    journal = options.pop("journal", None)
    log = options.pop("log", None)
    return BeamDistributor(workers=opts.workers, options=options, journal_root=journal, log=log)


def _runs_of(state: State, invocation: str) -> list[RunResult]:
    return [RunResult.from_row(state, state.run(r)) for r in state.runs_of(invocation)]


# ---- commands that write -------------------------------------------------------------------


def upgrade(
    cfg: Config,
    options: Optional[RunOptions] = None,
    *,
    dry_run: bool = False,
    to: Optional[str] = None,
    plan_out: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Run the pending migrations in order, or plan them with `dry_run`.

    Every plan reads the database at one instant, its snapshot: `options.as_of`, by
    default the moment the plan starts. It is recorded with the run and in the plan file.
    A dry-run writes nothing to Firestore and estimates the apply: reads, writes,
    deletes, archive bytes, and time at the traffic limits.

    With `options.runner="beam"`, each migration is planned and applied on an Apache Beam
    pipeline; its scripts must be distributable (`fsmigrate.distributed`). The run can be
    paused, re-rated or stopped from elsewhere (`control`), and stops by itself past
    `options.max_skip_ratio`. Hooks of the entry-point group `fsmigrate.hooks` are called
    when each run starts, finishes, fails or is stopped.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        options: How to run: batch size and bytes, concurrency, traffic limits,
            `max_skip_ratio`, runner, `as_of`. What it leaves None comes from
            `cfg.run`, else the default.
        dry_run: Plan and report; write nothing to Firestore.
        to: The last revision to run. None: every pending one.
        plan_out: With `dry_run`, also write the exact plan here, for `apply_plan`.
        progress: Told what happens: `start(script, mode)`, `advance(n)`,
            `finish()`, and `limit(ops_per_s)` if it has one. None: nothing is told.
        confirm: Asked `confirm(prompt)` before an apply to a real project (or to an
            environment that always asks); False declines. None: such an apply is
            refused with `ConfirmationRequired`.

    Returns:
        The runs, in order, and the open state file their reports read.

    Raises:
        UsageError: A bad option or revision (exit code 2), before anything is read.
        ConfirmationRequired: An apply to a real project without `confirm`.
        LockHeld: Another runner holds the target's lock (exit code 3).
        MigrationFailed: A migration raised; `exc.partial` holds the runs so far.
        RunStopped: The run was stopped on purpose (exit code 4); `exc.partial` too.
    """
    if plan_out is not None and not dry_run:
        raise UsageError(
            "--plan-out needs --dry-run (a plan is reviewed, then applied with `fsmigrate apply`)"
        )
    opts = cfg.run_options(options)
    limits = _limits(cfg, opts)
    distributor = _distributor(opts)
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
        opts=opts,
        limits=limits,
        progress=progress,
        confirm=confirm,
        plan_out=plan_out,
        distributor=distributor,
    )


def rerun(
    cfg: Config,
    revision: str,
    options: Optional[RunOptions] = None,
    *,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Run one `repeatable = True` migration again, applied or not.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        revision: The repeatable migration's revision.
        options: How to run: batch size and bytes, concurrency, traffic limits,
            `max_skip_ratio`, runner, `as_of`. What it leaves None comes from
            `cfg.run`, else the default.
        dry_run: Plan and report; write nothing to Firestore.
        progress: Told what happens: `start(script, mode)`, `advance(n)`,
            `finish()`, and `limit(ops_per_s)` if it has one. None: nothing is told.
        confirm: Asked `confirm(prompt)` before an apply to a real project (or to an
            environment that always asks); False declines. None: such an apply is
            refused with `ConfirmationRequired`.

    Returns:
        The runs, in order, and the open state file their reports read.

    Raises:
        UsageError: A bad option or revision (exit code 2), before anything is read.
        ConfirmationRequired: An apply to a real project without `confirm`.
        LockHeld: Another runner holds the target's lock (exit code 3).
        MigrationFailed: A migration raised; `exc.partial` holds the runs so far.
        RunStopped: The run was stopped on purpose (exit code 4); `exc.partial` too.
    """
    opts = cfg.run_options(options)
    limits = _limits(cfg, opts)
    distributor = _distributor(opts)
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
                f"{'revision' if len(before) == 1 else 'revisions'} {', '.join(before)} "
                f"{'comes' if len(before) == 1 else 'come'} before {revision} and "
                f"{'is' if len(before) == 1 else 'are'} "
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
        dry_run=dry_run,
        opts=opts,
        limits=limits,
        progress=progress,
        confirm=confirm,
        distributor=distributor,
    )


APPLY_REFUSES = ("runner", "workers", "beam_options", "as_of")
RESTORE_REFUSES = ("batch_size", "concurrency", *APPLY_REFUSES)


def apply_plan(
    cfg: Config,
    path: PathLike,
    options: Optional[RunOptions] = None,
    *,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Apply a reviewed plan file exactly: its operations, nothing planned again.

    The whole file is verified before any write: its counts, its digests, and each line
    against its `Write`. A plan for another target, a plan whose scripts changed since,
    and a plan already applied are refused.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        path: The plan file `upgrade(..., dry_run=True, plan_out=...)` wrote.
        options: As for `upgrade`, except where and when to plan: the plan has its
            own read times, so a runner, workers, Beam options or `as_of` are
            refused.
        progress: Told what happens: `start(script, mode)`, `advance(n)`,
            `finish()`, and `limit(ops_per_s)` if it has one. None: nothing is told.
        confirm: Asked `confirm(prompt)` before an apply to a real project (or to an
            environment that always asks); False declines. None: such an apply is
            refused with `ConfirmationRequired`.

    Returns:
        The runs, in order, and the open state file their reports read.

    Raises:
        PlanFileInvalid: The file is cut short, edited, or does not apply here.
        ConfirmationRequired: An apply to a real project without `confirm`.
        LockHeld: Another runner holds the target's lock (exit code 3).
    """
    plan_path = Path(path)
    if options is not None:
        options.refuse("apply", APPLY_REFUSES)
    opts = replace(cfg.run_options(options), runner="local", as_of=None)
    if not plan_path.is_file():
        raise UsageError(f"plan file {plan_path} does not exist")
    limits = _limits(cfg, opts)
    plan = planfile.PlanFile(plan_path)
    try:
        target, chain, state = _prepare(cfg)
        plan.verify(max_write_bytes=opts.batch_bytes)
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
            opts=opts,
            limits=limits,
            progress=progress,
            confirm=confirm,
        )
    finally:
        plan.close()


def restore(
    cfg: Config,
    run_id: str,
    options: Optional[RunOptions] = None,
    *,
    docs: Sequence[str] = (),
    dry_run: bool = False,
    progress: Optional[Progress] = None,
    confirm: Optional[Confirm] = None,
) -> UpgradeResult:
    """Write a run's archived before-images back, where the document does not exist now.

    A restore is forward: a new audited run. Documents that exist now are left alone
    and listed.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        run_id: The run whose before-images to write back.
        options: `batch_bytes`, the traffic limits and `max_skip_ratio`, as for
            `upgrade`. A restore commits full batches one at a time, so a batch
            size, concurrency, runner, workers, Beam options or `as_of` are refused.
        docs: Only these document paths. Empty: every document the run changed or
            deleted.
        dry_run: Plan and report; write nothing to Firestore.
        progress: Told what happens: `start(script, mode)`, `advance(n)`,
            `finish()`, and `limit(ops_per_s)` if it has one. None: nothing is told.
        confirm: Asked `confirm(prompt)` before an apply to a real project (or to an
            environment that always asks); False declines. None: such an apply is
            refused with `ConfirmationRequired`.

    Returns:
        The runs, in order, and the open state file their reports read.

    Raises:
        ArchiveUnavailable: The run kept no before-images, or they were pruned.
        RestoreRefused: A path of `docs` that the run never touched.
        ConfirmationRequired: An apply to a real project without `confirm`.
    """
    if options is not None:
        options.refuse("restore", RESTORE_REFUSES)
    opts = replace(
        cfg.run_options(options), batch_size=MAX_BATCH, concurrency=1, runner="local", as_of=None
    )
    limits = _limits(cfg, opts)
    target = cfg.target()
    state = cfg._open_state()
    source = state.run(run_id)
    if source["mode"] != "apply":
        raise UsageError(f"run {run_id} is a {source['mode']}: it changed nothing to restore")
    journal = state.journal(run_id)
    if journal is not None and journal["state"] == RECORDED:
        raise UsageError(
            f"run {run_id} is a Beam apply whose workers' journal is not imported yet (its "
            "coordinator stopped): run the same command again to import it, then restore"
        )
    if (source["project"], source["database"]) != (target.project, target.database):
        raise UsageError(
            f"run {run_id} changed {source['project']}/{source['database']}, not "
            f"{target.project}/{target.database}; pass that --project/--database"
        )
    docs = restore_docs.doc_paths(docs)
    restore_docs.check_docs(state, source, docs)  # refuses a --doc the run did not change
    warnings = _restorable(state, source, docs)  # refuses a pruned or paths-only archive
    later = restore_docs.later_deletes(state, source, docs)
    if later:
        warnings.append(restore_docs.describe_later(state, later))
        if not dry_run:  # asked even on the emulator: the data would not be what it was
            _ask(confirm, f"{warnings[-1]}. Restore them anyway?")
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
        opts=opts,
        limits=limits,
        progress=progress,
        confirm=confirm,
    )
    result.warnings.extend(warnings)
    return result


def prune(
    cfg: Config, *, before: str, dry_run: bool = False, confirm: Optional[Confirm] = None
) -> PruneResult:
    """Drop the before-images and journaled writes of the target's old runs.

    Runs, counts, checksums, notes and paths stay. The prune is itself a run. The values
    are overwritten and the file rebuilt, so they are gone from it and the space is given
    back. Runs whose journal is still needed are kept, and listed.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        before: Runs finished before this are pruned: an age such as '90d', or a
            date.
        dry_run: List what would be pruned; change nothing.
        confirm: Asked `confirm(prompt)` first; False declines. None: refused.

    Returns:
        What was pruned and kept, and the state file's size before and after.
    """
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
        cfg._open_state(),
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
    imported: list[str] = []
    with _holding_lease(cfg, store, state, f"{kind} {revision}", True, imported):
        for line in imported:  # the lease taken over, journals brought in
            warnings.warn(FsMigrateWarning(line), stacklevel=3)
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
    """Record a revision, and every one before it, as applied without running them.

    To adopt a database changed by hand: markers in the database and records in the
    state file.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        revision: The last revision to record.
        reason: Why, kept in the audit.

    Returns:
        One record per revision marked.
    """
    return _mark_by_hand(cfg, revision, reason, "stamp", through=True)


def resolve(cfg: Config, revision: str, *, reason: str) -> Marked:
    """Mark a failed or interrupted migration applied without running it.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        revision: The failed or interrupted migration.
        reason: Why, kept in the audit.

    Returns:
        The revision marked.
    """
    return _mark_by_hand(cfg, revision, reason, "resolve", through=False)[0]


def control(cfg: Config, action: str, value: Optional[str] = None) -> ControlSent:
    """Send a live control to the run holding the target's lock, wherever it runs.

    The runner and its Beam workers read the control document beside the lock at their
    batch boundaries, within a few seconds. The event is kept with who sent it and when,
    and the run records it.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        action: `pause`, `resume`, `rate` or `stop` (`CONTROL_ACTIONS`).
        value: With `rate`, the new cap in operations per second (the ramp still
            bounds it). With `stop`, an optional reason.

    Returns:
        The event sent, and the run it was sent to.

    Raises:
        NothingToControl: No run holds the lock (exit code 1).
        UsageError: A bad action or value (exit code 2).
    """
    if action == live.STOP and value is not None and not value.strip():
        value = None
    store = cfg._store()
    event, holder = live.send(store, action, value)
    return ControlSent(
        action=event.action,
        value=event.value,
        seq=event.seq,
        operator=event.operator,
        host=event.host,
        sent_at=event.sent_at,
        holder=_describe(holder),
    )


def _running(store: Store) -> Optional[RunningRun]:
    """The run holding the target's lock, from its lock and control documents."""
    lock = store.get(lock_path(store))
    if lock is None:
        return None
    body = lock.to_dict()
    progress = body.get("run") or {}
    controls = live.read(store, body.get("holder"))
    at = progress.get("at")
    return RunningRun(
        holder=_describe(body),
        command=str(body.get("command") or "?"),
        run_id=progress.get("run_id"),
        revision=progress.get("revision"),
        mode=progress.get("mode"),
        operations=progress.get("operations"),
        batches=progress.get("batches"),
        rate=progress.get("rate"),
        paused=controls.paused,
        paused_seen=bool(progress.get("paused")),
        stopping=controls.stop,
        requested_rate=controls.rate,
        updated_at=times.rfc3339(at, "seconds") if isinstance(at, dt.datetime) else None,
        controls=[e.to_json() for e in controls.events],
        stale=stale_reason(body, dt.datetime.now(dt.timezone.utc), socket.gethostname()),
    )


def break_lock(cfg: Config) -> Optional[LockHolder]:
    """Remove the target's lock, whoever holds it.

    Args:
        cfg: Where to work: the project, database, state file and migrations.

    Returns:
        Who held the lock, or None when there was none.
    """
    holder = _break_lock(cfg._store())
    return LockHolder(holder, _describe(holder)) if holder is not None else None


def new(cfg: Config, message: str) -> Path:
    """Write the next migration script from a template.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        message: What the migration does: its description, and its file name's slug.

    Returns:
        The path of the new script, with the right `revision` and `down_revision`.
    """
    return scripts.new_script(cfg.migrations_path, message)


# ---- commands that read --------------------------------------------------------------------


def status(cfg: Config, *, local: bool = False) -> StatusReport:
    """Each revision's state, and the run holding the target's lock.

    A revision is applied, applied elsewhere, pending, or applied but changed or missing.
    `running` says the run's progress, its rate and whether it is paused. Never creates
    the state file.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        local: Read the state file only, not the markers and the lock in the
            database.

    Returns:
        The revisions in chain order, and the running run, if any.
    """
    target = cfg.target()
    chain = cfg._chain()
    state = State.open_readonly(cfg.state_path)
    applied = state.applied(target.project, target.database) if state else {}
    store = None if local else cfg._store(target)
    markers = None if store is None else cfg._markers(store).read()
    unfinished = {}
    for s in chain if state is not None else ():
        last = state.last_apply(target.project, target.database, s.revision)  # type: ignore[union-attr]
        if last is not None and last["status"] != "succeeded":
            unfinished[s.revision] = last
    rows = drift.status_rows(chain, applied, markers, unfinished)
    running = None if store is None else _running(store)
    journals = _unimported(state, target, _alive(running), store)
    return StatusReport(
        target, [StatusRow(**r) for r in rows], markers is not None, running, journals
    )


def verify(cfg: Config, *, local: bool = False) -> list[Finding]:
    """Applied scripts edited or missing since, and local records without a marker.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        local: Read the state file only, not the markers in the database.

    Returns:
        The findings; empty when all is well.
    """
    target = cfg.target()
    store = None if local else cfg._store(target)
    markers = None if store is None else cfg._markers(store).read()
    state = State.open_readonly(cfg.state_path)
    found = [Finding(**f) for f in _findings(cfg, cfg._chain(), target, state, markers)]
    running = _running(store) if store is not None else None
    for journal in _unimported(state, target, _alive(running), store):
        found.append(Finding(journal.revision, "unimported journal", journal.message()))
    return found


def history(cfg: Config, limit: Optional[int] = None) -> list[RunResult]:
    """The runs recorded for the target, newest first.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        limit: The newest `limit` runs only. None: all of them.

    Returns:
        The runs, newest first.
    """
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
    """Every recorded run, or one run with its operations.

    Read-only: never creates the state file.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        run_id: The run to audit. None: list the runs.
        since: With no `run_id`, only runs started within this age: '7d', '12h'.
        limit: With no `run_id`, the newest `limit` runs only.

    Returns:
        The runs, newest first; or, for `run_id`, the run with its operations and reports.
    """
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
    """Run a health check against the target.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        name: The check: a plugin of the entry-point group `fsmigrate.checks`, e.g.
            `heartbeats`.
        **options: The check's declared options. Text values, such as a window '1h',
            are parsed as on the command line.

    Returns:
        Whether the collection is healthy, why not, and the check's metrics.
    """
    return checks.run(cfg._store, name, options)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_names() -> list[str]:
    """The names of the installed checks.

    Returns:
        The names of the plugins of the entry-point group `fsmigrate.checks`, sorted.
    """
    return checks.available()


def lint(cfg: Config, paths: Sequence[PathLike] = ()) -> LintReport:
    """Static checks of the migration scripts, without importing them or reaching Firestore.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        paths: Files and directories to check. Empty: the migrations directory.

    Returns:
        The findings. `report.ok` is False when there is an error; warnings alone leave it
        True.
    """
    return lint_paths([Path(p) for p in paths] or [cfg.migrations_path])


def doctor(cfg: Config) -> DoctorReport:
    """Check the target before a run, as `fsmigrate doctor` does.

    It checks the principal the credentials act as; the database's mode, point-in-time
    recovery and delete protection, through the admin API (skipped on the emulator); a
    read, a write and a delete of a probe document under the markers collection; and the
    declared query of each pending migration, naming a missing composite index. Never
    creates the state file.

    Args:
        cfg: Where to work: the project, database, state file and migrations.

    Returns:
        One line per check, ok, warn or fail; `ok` is False when a check failed.
    """
    target = cfg.target()
    chain = cfg._chain()
    store = cfg._store(target)
    connection = store.connection
    state = State.open_readonly(cfg.state_path)
    try:
        applied = set(state.applied(target.project, target.database)) if state else set()
    finally:
        if state is not None:
            state.close()
    try:
        applied |= set(cfg._markers(store).read())
    except FsMigrateError:
        pass  # the probe's read says why
    queries = [
        (s.revision, s.forms.source) for s in chain.pending(applied) if s.forms.source is not None
    ]
    source = (
        ""
        if connection.is_emulator
        else credentials_source(
            connection.credentials, bool(connection.impersonate_service_account)
        )
    )
    principal = principal_of(store.channels.credentials, source)
    if connection.is_emulator:
        return diagnose(target, principal, store, None, queries)
    with admin_client(store.channels) as admin:
        return diagnose(target, principal, store, admin, queries, endpoint=connection.endpoint)


# ---- the config, the CI gate, branches -------------------------------------------------------


def config(cfg: Config) -> Settings:
    """The settings a config was made from, each with where it came from.

    Args:
        cfg: A config from `Config.from_file` or the command line. For a config
            built by hand, its own values, with the source `Config`.

    Returns:
        Each setting's value and source.
    """
    if cfg.settings is not None:
        return cfg.settings
    values = {
        "project": cfg.project,
        "database": cfg.database,
        "state": str(cfg.state),
        "migrations": str(cfg.migrations),
        "markers-collection": cfg.markers_collection,
        "emulator-host": cfg.emulator_host,
        "endpoint": cfg.connection.endpoint,
        "credentials": cfg.connection.credentials,
        "impersonate-service-account": cfg.connection.impersonate_service_account,
        "quota-project": cfg.connection.quota_project,
        "lock-ttl": cfg.lock_ttl,
        "patience": cfg.patience,
        "always-confirm": cfg.always_confirm,
    }
    resolved = cfg.run_options()
    for key in config_file.RUN_KEYS:
        values[key.name] = getattr(resolved, key.attr)
    return Settings(
        {k: config_file.Setting(v, "Config") for k, v in values.items()},
        environment=cfg.environment,
    )


@dataclass
class CheckReport:
    """What `status_check`, the CI gate, found.

    Attributes:
        target: The project and database.
        reasons: Why the target is not up to date, one line each. Empty: it is.
        status: The revisions' status, when the scripts load.
        findings: Drift, as `verify` finds it.
        plans: Each pending revision's dry-run, with `plan=True`.
        environment: The config file's environment, if any.
    """

    target: Target
    reasons: list[str]
    status: Optional[StatusReport]
    findings: list[Finding]
    plans: dict[str, RunResult] = field(default_factory=dict)
    environment: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def pending(self) -> list[StatusRow]:
        return [r for r in self.status.revisions if r.state == "pending"] if self.status else []

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "project": self.target.project,
            "database": self.target.database,
            "environment": self.environment,
            "reasons": self.reasons,
            "pending": [r.to_json() for r in self.pending],
            "revisions": [r.to_json() for r in self.status.revisions] if self.status else None,
            "findings": [f.to_json() for f in self.findings],
            "plans": {
                rev: {"run_id": r.run_id, "planned": r.planned, "counts": r.counts}
                for rev, r in self.plans.items()
            },
        }


def status_check(
    cfg: Config,
    *,
    local: bool = False,
    plan: bool = False,
    progress: Optional[Progress] = None,
) -> CheckReport:
    """The CI gate: is the target up to date with the scripts?

    Not ok when the scripts do not load (a syntax error, two heads, a duplicate revision),
    when an applied script was edited or is another script now (drift), or when the target
    has pending migrations.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        local: Read the state file only, not the markers in the database.
        plan: Also dry-run each pending migration for its counts, recorded in the
            state file like any dry-run.
        progress: Told what happens: `start(script, mode)`, `advance(n)`,
            `finish()`, and `limit(ops_per_s)` if it has one. None: nothing is told.

    Returns:
        `ok`, the reasons, the pending revisions, and the plans.
    """
    target = cfg.target()
    try:
        cfg._chain()
    except ScriptError as exc:
        return CheckReport(
            target, [f"the scripts do not load: {exc}"], None, [], environment=cfg.environment
        )
    found = status(cfg, local=local)
    problems = [f for f in verify(cfg, local=local) if f.blocking]
    reasons = [f"{f.problem}: {f.message}" for f in problems]
    report_ = CheckReport(target, reasons, found, problems, environment=cfg.environment)
    pending = report_.pending
    if pending:
        revs = ", ".join(r.revision for r in pending)
        reasons.append(
            f"{len(pending)} migration(s) pending on {target.describe()}: {revs}; apply them "
            "with `fsmigrate upgrade` (the deploy), or they are what this change adds"
        )
    if plan and pending and not problems:
        dry = upgrade(cfg, dry_run=True, progress=progress)
        try:
            report_.plans = {r.revision: r for r in dry.runs}
        finally:
            dry.state.close()
    return report_


@dataclass
class Rebased:
    """What `rebase` moved, or would move with `dry_run`.

    Attributes:
        moves: One move per script: its old and new file name and revision.
        head: The head the scripts moved on top of.
        looked: Where it checked that no moved script was applied.
        dry_run: Whether nothing was changed.
    """

    moves: list[rebasing.Move]
    head: Optional[str]
    looked: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "onto": self.head,
            "looked": self.looked,
            "moves": [m.to_json() for m in self.moves],
        }


def rebase(
    cfg: Config,
    names: Sequence[str],
    *,
    dry_run: bool = False,
    local: bool = False,
    only: bool = False,
) -> Rebased:
    """Move this branch's migrations on top of the other scripts' head.

    The files are renumbered, with their `revision`; the first one's `down_revision` is
    set to the head; slugs are kept. A moved script applied anywhere this can see is
    refused: any target of the state file, and the target's markers.

    Args:
        cfg: Where to work: the project, database, state file and migrations.
        names: This branch's first migration, by revision or file name, and any more
            in order. Those after the last follow, unless `only`.
        dry_run: Say what would move; change nothing.
        local: Check the state file only, not the target's markers.
        only: Move just the named migrations.

    Returns:
        The moves, and where it checked that none was applied.
    """
    found = rebasing.load_all(cfg.migrations_path)
    moving = rebasing.choose(found, names, follow=not only)
    applied: dict[str, set[str]] = {}
    looked: list[str] = []
    state = State.open_readonly(cfg.state_path)
    if state is not None:
        try:
            for row in state.applied_anywhere():
                where = f"{cfg.state_path} ({row['project']}/{row['database']})"
                applied.setdefault(where, set()).add(row["checksum"])
        finally:
            state.close()
        looked.append(str(cfg.state_path))
    if not local:
        try:
            target = cfg.target()
        except UsageError as exc:
            raise UsageError(
                f"{exc}; rebase reads the target's markers to refuse an applied script "
                "(--local: check the state file only)"
            ) from exc
        markers = cfg._markers(cfg._store(target)).read()
        applied[f"the markers of {target.describe()}"] = {
            str(m.get("checksum")) for m in markers.values()
        }
        looked.append(f"markers of {target.describe()}")
    moves = rebasing.plan(found, moving, applied)
    head = moves[0].new_down_revision if moves else None
    if not dry_run:
        rebasing.apply(moves)
    return Rebased(moves, head, looked, dry_run)
