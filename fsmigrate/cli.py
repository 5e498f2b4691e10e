"""The command line: parse options, build objects, call the core, print.

The only module that imports click or tqdm. Domain errors become one line on stderr,
`FAILED: ...`, and the exit code the error carries (README: Exit codes).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import click
from tqdm import tqdm

from . import __version__, emulator as emu
from . import audit_report, checks, commands, durations, heartbeats, planfile, report, scripts, testhooks
from .lease import DEFAULT_TTL, Lease, break_lock, describe as describe_holder
from .markers import DEFAULT_ROOT, Markers
from .restore import restore_script
from .errors import (Aborted, FsMigrateError, RunNotFound, ScriptsChanged, StateCorrupt,
                     UsageError)
from .runner import (DEFAULT_BATCH_BYTES, MAX_BATCH, MAX_BATCH_BYTES, MAX_CONCURRENCY,
                     MIN_BATCH_BYTES, Runner)
from .state import State, new_id
from .store import Store, Target, target_from_env

FORMATS_RUN = click.Choice(["text", "json", "markdown"])
FORMATS_LIST = click.Choice(["text", "json", "jsonl"])


@dataclass
class Config:
    project: Optional[str]
    database: Optional[str]
    state_path: Path
    migrations: Path
    traceback: bool
    markers_root: str = DEFAULT_ROOT

    def target(self) -> Target:
        return target_from_env(self.project, self.database)

    def store(self, target: Target) -> Store:
        store = Store(target)
        store.reserved_root = self.markers_root
        return store

    def markers(self, store: Store) -> Markers:
        return Markers(store, self.markers_root)

    def chain(self) -> scripts.Chain:
        return scripts.load_chain(self.migrations)


class FsMigrateGroup(click.Group):
    """Turns FsMigrateError (and stray exceptions) into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FsMigrateError as exc:
            if _want_traceback(ctx):
                raise
            click.echo(f"FAILED: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except sqlite3.DatabaseError as exc:
            if _want_traceback(ctx):
                raise
            cfg = ctx.find_object(Config)
            where = cfg.state_path if cfg else "the state file"
            click.echo(f"FAILED: {StateCorrupt(where, str(exc))}", err=True)
            ctx.exit(1)
        except BrokenPipeError:  # `fsmigrate audit ... | head`: stop quietly
            sys.stdout = open(os.devnull, "w")
            ctx.exit(1)
        except click.Abort:
            click.echo(f"FAILED: {Aborted('declined at the prompt')}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if _want_traceback(ctx):
                raise
            click.echo(f"FAILED: unexpected {type(exc).__name__}: {exc} "
                       "(rerun with --traceback for details)", err=True)
            ctx.exit(1)


def _want_traceback(ctx: click.Context) -> bool:
    cfg = ctx.find_object(Config)
    return bool(cfg and cfg.traceback) or "--traceback" in sys.argv


def _emit(chunks: Iterable[str], path: Optional[Path] = None) -> None:
    if path is None:
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(chunk)


@click.group(cls=FsMigrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", envvar="FSMIGRATE_PROJECT",
              help="Google Cloud project (or FSMIGRATE_PROJECT / GOOGLE_CLOUD_PROJECT).")
@click.option("--database", default=None, help="Firestore database id [default: (default)].")
@click.option("--state", "state_path", envvar="FSMIGRATE_STATE", default="state.db",
              show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite state file (or FSMIGRATE_STATE).")
@click.option("--migrations", envvar="FSMIGRATE_MIGRATIONS", default="migrations",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of migration scripts (or FSMIGRATE_MIGRATIONS).")
@click.option("--markers-collection", "markers_root", envvar="FSMIGRATE_MARKERS",
              default=DEFAULT_ROOT, show_default=True,
              help="Top-level collection of fsmigrate's own documents in the target "
                   "(markers of applied revisions, the lock); never scanned as user data.")
@click.option("--traceback", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(__version__, prog_name="fsmigrate")
@click.pass_context
def cli(ctx: click.Context, project: Optional[str], database: Optional[str], state_path: Path,
        migrations: Path, markers_root: str, traceback: bool) -> None:
    """Versioned, forward-only, audited migrations for Google Cloud Firestore.

    The emulator is used when FIRESTORE_EMULATOR_HOST is set.

    Example:

        fsmigrate --project my-proj upgrade --dry-run
    """
    if not markers_root or "/" in markers_root:
        raise click.BadParameter("must be a top-level collection id",
                                 param_hint="--markers-collection")
    ctx.obj = Config(project, database, state_path, migrations, traceback, markers_root)


# ---- new -------------------------------------------------------------------------------


@cli.command("new")
@click.argument("message")
@click.pass_obj
def new_cmd(cfg: Config, message: str) -> None:
    """Write the next migration script from a template.

    Example:

        fsmigrate new "normalize heartbeat ids"
    """
    path = scripts.new_script(cfg.migrations, message)
    click.echo(f"created {path}")


# ---- status / history / verify -------------------------------------------------------------


LOCAL_OPTION = click.option("--local", is_flag=True,
                            help="Only the state file: do not read the markers in the database.")


@cli.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@LOCAL_OPTION
@click.pass_obj
def status_cmd(cfg: Config, fmt: str, local: bool) -> None:
    """Show each migration as applied, applied elsewhere, or pending (read-only).

    Reads the state file and the markers in the target database (the shared record of
    what is applied, wherever from); --local reads only the state file.

    Example:

        fsmigrate --project my-proj status --format json
    """
    target = cfg.target()
    chain = cfg.chain()
    state = State.open_readonly(cfg.state_path)
    applied = state.applied(target.project, target.database) if state else {}
    markers = None if local else cfg.markers(cfg.store(target)).read()
    rows = commands.status_rows(chain, applied, markers)
    _emit(report.status_chunks(rows, target, fmt))


@cli.command("history")
@click.option("--format", "fmt", type=FORMATS_LIST, default="text", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N runs only.")
@click.pass_obj
def history_cmd(cfg: Config, fmt: str, limit: Optional[int]) -> None:
    """List the runs (dry-runs and applies) recorded for the target, newest first.

    Example:

        fsmigrate --project my-proj history --limit 20
    """
    target = cfg.target()
    state = State.open_readonly(cfg.state_path)
    rows = state.runs(target.project, target.database, limit) if state else []
    _emit(report.runs_chunks(state, rows, fmt))


@cli.command("verify")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@LOCAL_OPTION
@click.pass_obj
def verify_cmd(cfg: Config, fmt: str, local: bool) -> None:
    """Check that applied migrations still match their scripts (exit 1 if not).

    Reports scripts edited since they were applied and applied scripts now missing.

    Example:

        fsmigrate --project my-proj verify
    """
    target = cfg.target()
    markers = None if local else cfg.markers(cfg.store(target)).read()
    findings = _verify(cfg, cfg.chain(), target, State.open_readonly(cfg.state_path), markers)
    _emit(report.findings_chunks(findings, fmt))
    if findings:
        sys.exit(1)


def _verify(cfg: Config, chain: scripts.Chain, target: Target, state: Optional[State],
            markers: Optional[dict[str, dict[str, Any]]] = None) -> list[dict[str, Any]]:
    local = state.applied(target.project, target.database) if state else {}
    return commands.findings(chain, local, markers, migrations=cfg.migrations,
                             state_path=cfg.state_path)


# ---- upgrade --------------------------------------------------------------------------------


class _Bar:
    """tqdm progress for the runner (docs done, docs/s); silent when quiet or not a TTY."""

    def __init__(self, quiet: bool) -> None:
        self.disable = quiet or not sys.stderr.isatty()
        self.bar: Optional[tqdm] = None

    def start(self, script: scripts.Script, mode: str) -> None:
        self.bar = tqdm(desc=f"{script.revision} {mode}", unit="doc", disable=self.disable,
                        file=sys.stderr, dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _report_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".json": "json", ".md": "markdown", ".markdown": "markdown"}.get(suffix, "text")


def run_options(fn: Any) -> Any:
    """The options `upgrade` and `rerun` share."""
    for option in reversed([
        click.option("--dry-run", is_flag=True,
                     help="Plan and report; write nothing to Firestore."),
        click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=MAX_BATCH,
                     show_default=True, help="Operations per atomic commit."),
        click.option("--batch-bytes", type=click.IntRange(MIN_BATCH_BYTES, MAX_BATCH_BYTES),
                     default=DEFAULT_BATCH_BYTES, show_default=True,
                     help="Encoded bytes per commit (the emulator refuses requests over 4 MiB, "
                          "production over 10 MiB; up to 9.5 MiB is safe there)."),
        click.option("--format", "fmt", type=FORMATS_RUN, default="text", show_default=True,
                     help="Output on stdout (text shows a sample of the documents)."),
        click.option("--report", "report_path",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the full report (every document) here; "
                          ".json / .md / text."),
        click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=1,
                     show_default=True,
                     help="Batches committed at once while the next ones are planned. Above "
                          "1, batches may land out of order (migrations yield ctx.barrier() "
                          "where order matters)."),
        click.option("--yes", is_flag=True, help="Do not ask for confirmation on a real project."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]):
        fn = option(fn)
    return fn


@cli.command("upgrade")
@click.option("--to", "to", default=None, help="Stop after this revision.")
@click.option("--plan-out", type=click.Path(dir_okay=False, path_type=Path),
              help="With --dry-run: write the exact plan (every write, precondition and "
                   "before-image) for `fsmigrate apply`.")
@run_options
@click.pass_obj
def upgrade_cmd(cfg: Config, to: Optional[str], plan_out: Optional[Path], **run: Any) -> None:
    """Run the pending migrations in order (or plan them with --dry-run).

    A dry-run writes nothing to Firestore and is recorded in the state file, so the audit
    shows who looked before applying. Against a real project (no FIRESTORE_EMULATOR_HOST)
    an apply asks for confirmation unless --yes.

    Example:

        fsmigrate --project my-proj upgrade --dry-run --report plan.md
    """
    target, chain, state = _prepare(cfg)
    if to is not None:
        chain.get(to)
    if plan_out is not None and not run["dry_run"]:
        raise UsageError("--plan-out needs --dry-run (a plan is reviewed, then applied with "
                         "`fsmigrate apply`)")

    def pending() -> list[scripts.Script]:
        return chain.pending(set(state.applied(target.project, target.database)), to)

    _execute(cfg, target, chain, state, pending, command="upgrade", plan_out=plan_out, **run)


@cli.command("apply")
@click.argument("plan_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@run_options
@click.pass_obj
def apply_cmd(cfg: Config, plan_path: Path, **run: Any) -> None:
    """Apply a reviewed plan exactly: the operations it lists, nothing re-planned.

    Refuses a plan made for another project or database, a plan whose scripts changed
    since, and a plan already applied. Operations whose document changed since the plan
    are skipped and reported (their preconditions). The runs record the plan id.

    Example:

        fsmigrate --project my-proj upgrade --dry-run --plan-out plan.jsonl
        fsmigrate --project my-proj apply plan.jsonl
    """
    if run["dry_run"]:
        raise UsageError("apply has no --dry-run: the plan file is the dry-run")
    plan = planfile.PlanFile(plan_path)
    target, chain, state = _prepare(cfg)
    plan.verify(max_write_bytes=run["batch_bytes"])  # the whole file, before any write
    select = commands.plan_scripts(plan, target, chain, state)
    _execute(cfg, target, chain, state, select, command=f"apply {plan_path.name}", kind="plan",
             source=plan.plan_id, plan_digest=plan.digest, **run)


@cli.command("rerun")
@click.argument("revision")
@run_options
@click.option("--apply-hint", hidden=True, default=report.APPLY_HINT,
              help="How the dry-run report says to apply (for wrapper scripts).")
@click.pass_obj
def rerun_cmd(cfg: Config, revision: str, **run: Any) -> None:
    """Run one repeatable migration again, applied or not (e.g. a cleanup to repeat).

    Only scripts that declare `repeatable = True` (their plan is computed from the
    current data, so running it again is safe) can be rerun. Every rerun is recorded
    like an upgrade.

    Example:

        fsmigrate --project my-proj rerun 0001 --dry-run
    """
    target, chain, state = _prepare(cfg)
    script = chain.get(revision)
    if not script.repeatable:
        raise UsageError(f"revision {revision} ({script.path}) is not repeatable; only scripts "
                         "with `repeatable = True` can be rerun")
    def todo() -> list[scripts.Script]:
        applied = set(state.applied(target.project, target.database))
        before = [s.revision for s in chain.pending(applied, revision) if s.revision != revision]
        if before:
            raise UsageError(f"revision(s) {', '.join(before)} come before {revision} and are "
                             f"not applied; run `fsmigrate upgrade --to {before[-1]}` first")
        return [script]

    _execute(cfg, target, chain, state, todo, command=f"rerun {revision}", kind="rerun", **run)


def _prepare(cfg: Config) -> tuple[Target, scripts.Chain, State]:
    target = cfg.target()
    chain = cfg.chain()
    state = State.open(cfg.state_path)
    drift = _verify(cfg, chain, target, state)
    if drift:
        raise ScriptsChanged(drift[0]["message"] + "; see `fsmigrate verify`")
    return target, chain, state


def _execute(cfg: Config, target: Target, chain: scripts.Chain, state: State,
             select: Callable[[], list[scripts.Script]], *, command: str, dry_run: bool,
             batch_size: int, fmt: str, report_path: Optional[Path], yes: bool, quiet: bool,
             concurrency: int = 1, kind: str = "upgrade", source: Optional[str] = None,
             plan_out: Optional[Path] = None, apply_hint: str = report.APPLY_HINT,
             batch_bytes: int = DEFAULT_BATCH_BYTES, plan_digest: Optional[str] = None) -> None:
    """Run (or plan) the selected migrations in order, then print the report; the one path
    for both. An apply holds the target's lease from before it reads what is pending until
    it is done, so two runners never both apply."""
    todo = select()
    if todo and not dry_run and not target.is_emulator and not yes:
        revs = ", ".join(s.revision for s in todo)
        click.confirm(f"Apply {len(todo)} migration(s) ({revs}) to {target.describe()}?",
                      abort=True, err=True)
    store = cfg.store(target)
    markers = cfg.markers(store)
    with _holding_lease(store, command, enabled=bool(todo) and not dry_run) as lease:
        _adopt_markers(cfg, chain, target, state, markers)
        todo = select()  # what was applied meanwhile, here or elsewhere, is not pending
        runner = Runner(store, state, chain, batch_size=batch_size, progress=_Bar(quiet),
                        guard=lease.check if lease else None, concurrency=concurrency,
                        markers=markers, batch_bytes=batch_bytes)
        runner.capture_writes = plan_out is not None
        invocation = new_id()
        try:
            for script in todo:
                runner.run(script, dry_run=dry_run, invocation=invocation, kind=kind,
                           source=source, plan_digest=plan_digest)
        finally:
            _report_runs(state, target, invocation, fmt, report_path, apply_hint)
        if plan_out is not None:
            written = planfile.write_plan(state, state.runs_of(invocation), target, invocation,
                                          plan_out)
            state.set_plan_digest(state.runs_of(invocation), written.digest)
            click.echo(f"plan {invocation} written to {plan_out} ({written.operations} "
                       f"operations, sha256 {written.digest}); apply it with "
                       f"`fsmigrate apply {plan_out}`", err=True)


def _adopt_markers(cfg: Config, chain: scripts.Chain, target: Target, state: State,
                   markers: Markers) -> None:
    """Record locally what the database's markers say is applied; refuse a marker whose
    script differs from ours (like a local checksum drift)."""
    found = markers.read()
    drift = _verify(cfg, chain, target, None, found)
    drift = [f for f in drift if f["problem"] != "no marker"]
    if drift:
        raise ScriptsChanged(drift[0]["message"] + "; see `fsmigrate verify`")
    local = state.applied(target.project, target.database)
    for revision, marker in sorted(found.items()):
        if revision not in local:
            state.adopt_marker(project=target.project, database=target.database, marker=marker)


@contextlib.contextmanager
def _holding_lease(store: Store, command: str, enabled: bool) -> Iterator[Optional[Lease]]:
    if not enabled:
        yield None
        return
    lease = Lease(store, command, ttl=_lock_ttl()).acquire()
    try:
        if lease.took_over:
            click.echo(f"WARNING: {lease.took_over}", err=True)
        testhooks.reached("after-lock")
        yield lease
    finally:
        lease.release()


def _lock_ttl() -> float:
    try:
        return float(os.environ.get("FSMIGRATE_LOCK_TTL", DEFAULT_TTL))
    except ValueError as exc:
        raise UsageError(f"FSMIGRATE_LOCK_TTL: {exc}") from exc


def _report_runs(state: State, target: Target, invocation: str, fmt: str,
                 report_path: Optional[Path], apply_hint: str = report.APPLY_HINT) -> None:
    run_ids = state.runs_of(invocation)
    _emit(report.upgrade_chunks(state, run_ids, target, fmt, full=False, apply_hint=apply_hint))
    if report_path is not None:
        _emit(report.upgrade_chunks(state, run_ids, target, _report_format(report_path),
                                    full=True), report_path)
        click.echo(f"report written to {report_path}", err=True)
    skipped = sum(state.run(r)["skipped"] for r in run_ids)
    if skipped:
        click.echo(f"WARNING: {skipped} operation(s) skipped because their document changed "
                   "after it was planned; see the report", err=True)


@cli.command("resolve")
@click.argument("revision")
@click.option("--reason", required=True, help="Why it counts as applied (kept in the audit).")
@click.pass_obj
def resolve_cmd(cfg: Config, revision: str, reason: str) -> None:
    """Mark a migration applied without running it (after a failed or interrupted run).

    Use it when a migration failed in its own code and its effect was completed or made
    unnecessary by hand. Recorded as a run of kind `resolve` with the reason.

    Example:

        fsmigrate --project my-proj resolve 0003 --reason "finished by hand, see INC-42"
    """
    _mark_applied_by_hand(cfg, revision, reason, "resolve", through=False)


@cli.command("stamp")
@click.argument("revision")
@click.option("--reason", required=True, help="Why it counts as applied (kept in the audit).")
@click.pass_obj
def stamp_cmd(cfg: Config, revision: str, reason: str) -> None:
    """Record REVISION and every revision before it as applied, without running them.

    For adopting a database that was changed by hand (like alembic's stamp or Flyway's
    baseline): writes the markers in the database and the records in the state file,
    each as an audited run of kind `stamp` with the reason.

    Example:

        fsmigrate --project my-proj stamp 0001 --reason "cleaned by hand on 2026-11-20"
    """
    _mark_applied_by_hand(cfg, revision, reason, "stamp", through=True)


def _mark_applied_by_hand(cfg: Config, revision: str, reason: str, kind: str,
                          through: bool) -> None:
    target, chain, state = _prepare(cfg)
    chain.get(revision)  # an unknown revision is a usage error
    if not reason.strip():
        raise UsageError("--reason must say why")
    store = cfg.store(target)
    markers = cfg.markers(store)
    with _holding_lease(store, f"{kind} {revision}", enabled=True):
        _adopt_markers(cfg, chain, target, state, markers)
        applied = set(state.applied(target.project, target.database))
        if revision in applied:
            raise UsageError(f"revision {revision} is already applied")
        todo = chain.pending(applied, revision)
        if not through and todo[:-1]:
            raise UsageError(f"revision(s) {', '.join(s.revision for s in todo[:-1])} come "
                             f"before {revision} and are not applied; resolve or apply them "
                             "first")
        for item in todo:
            run_id = state.record_by_hand(project=target.project, database=target.database,
                                          script=item, reason=reason, invocation=new_id(),
                                          kind=kind)
            markers.write(revision=item.revision, checksum=item.checksum,
                          description=item.description, run_id=run_id, kind=kind,
                          reason=reason)
            click.echo(f"revision {item.revision} marked applied by run {run_id} "
                       f"({kind}: {reason})")


@cli.command("break-lock")
@click.pass_obj
def break_lock_cmd(cfg: Config) -> None:
    """Remove the target's lock left by a runner that died (prints who held it).

    Only needed when a dead runner's lock has not expired yet and it ran on another
    machine (a lock of a dead process on this machine is taken over by itself).
    Breaking the lock of a runner that is still working lets two runners apply at once.

    Example:

        fsmigrate --project my-proj break-lock
    """
    holder = break_lock(cfg.store(cfg.target()))
    if holder is None:
        click.echo("no lock is held")
        return
    click.echo(f"WARNING: broke the lock held by {describe_holder(holder)}; if that runner is "
               "still working, two runners may now apply at once", err=True)
    click.echo("lock removed")


@cli.command("restore")
@click.argument("run_id")
@click.option("--doc", "docs", multiple=True, help="Only this document path (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; write nothing.")
@click.option("--format", "fmt", type=FORMATS_RUN, default="text", show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a real project.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def restore_cmd(cfg: Config, run_id: str, docs: tuple[str, ...], dry_run: bool, fmt: str,
                report_path: Optional[Path], yes: bool, quiet: bool) -> None:
    """Write a run's archived before-images back, where the document does not exist now.

    Forward, never a rollback: a new, audited run that creates each document deleted or
    changed by RUN_ID from its exact archived copy, with the precondition "must not exist";
    documents that exist now are left alone and listed.

    Example:

        fsmigrate --project my-proj restore 20261128T120000Z-a1b2c3 --doc users/u1 --dry-run
    """
    target = cfg.target()
    state = State.open(cfg.state_path)
    source = state.run(run_id)
    if source["mode"] != "apply":
        raise UsageError(f"run {run_id} is a {source['mode']}: it changed nothing to restore")
    if (source["project"], source["database"]) != (target.project, target.database):
        raise UsageError(f"run {run_id} changed {source['project']}/{source['database']}, not "
                         f"{target.project}/{target.database}; pass that --project/--database")
    script = restore_script(state, source, docs)
    _execute(cfg, target, cfg.chain(), state, lambda: [script], command=f"restore {run_id}",
             kind="restore", dry_run=dry_run, batch_size=MAX_BATCH, fmt=fmt,
             report_path=report_path, yes=yes, quiet=quiet)


# ---- audit --------------------------------------------------------------------------------


@cli.command("audit")
@click.argument("run_id", required=False)
@click.option("--format", "fmt",
              type=click.Choice(["text", "json", "jsonl", "markdown", "html"]),
              default="text", show_default=True,
              help="jsonl/json include each document's before-image and after-image; "
                   "markdown and html are a report for a change ticket (with RUN_ID).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Newest N runs only (when listing runs).")
@click.option("--since", default=None, help="Only runs started within this long: 7d, 12h...")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the run's before-images to this JSON-lines file.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of stdout.")
@click.pass_obj
def audit_cmd(cfg: Config, run_id: Optional[str], fmt: str, limit: Optional[int],
              since: Optional[str], export_path: Optional[Path], output: Optional[Path]) -> None:
    """List recorded runs (newest first), or one run's operations, report or archive.

    Read-only: never creates the state file.

    Examples:

        fsmigrate audit --since 7d

        fsmigrate audit 20261128T120000Z-a1b2c3 --format markdown -o change-ticket.md

        fsmigrate audit 20261128T120000Z-a1b2c3 --export before-images.jsonl
    """
    state = State.open_readonly(cfg.state_path)
    if run_id is None:
        if fmt in ("markdown", "html") or export_path:
            raise UsageError("--format markdown/html and --export need a RUN_ID")
        rows = state.runs(limit=limit) if state else []
        if since:
            try:
                cutoff = dt.datetime.now(dt.timezone.utc) - durations.parse_window(since)
            except ValueError as exc:
                raise UsageError(f"--since: {exc}") from exc
            rows = [r for r in rows if _parse_time(r["started_at"]) >= cutoff]
        _emit(report.runs_chunks(state, rows, "json" if fmt == "json" else
                                 "jsonl" if fmt == "jsonl" else "text"), output)
        return
    if state is None:
        raise RunNotFound(run_id)
    if export_path is not None:
        _emit(audit_report.export_before_images(state, run_id), export_path)
        click.echo(f"before-images written to {export_path}", err=True)
        return
    if fmt in ("markdown", "html"):
        render = audit_report.markdown if fmt == "markdown" else audit_report.html
        _emit(render(state, run_id, str(cfg.state_path)), output)
        return
    _emit(report.audit_run_chunks(state, run_id, fmt), output)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- check ---------------------------------------------------------------------------------


class CheckGroup(FsMigrateGroup):
    """`check NAME`: one subcommand per check found through the entry-point group
    `fsmigrate.checks`, its options as the check declares them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return checks.available()

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name not in checks.available():
            return None
        return _check_command(checks.load(name))


def _option_param(opt: checks.Option) -> click.Option:
    if opt.type is bool:
        return click.Option([opt.flag], is_flag=True, default=bool(opt.default), help=opt.help)
    kind: Any = opt.type if opt.parse is None else str
    if opt.type is int and opt.minimum is not None and opt.parse is None:
        kind = click.IntRange(min=int(opt.minimum))
    elif opt.type is float and opt.minimum is not None and opt.parse is None:
        kind = click.FloatRange(min=opt.minimum)
    return click.Option([opt.flag, opt.name], type=kind, default=opt.default,
                        show_default=opt.default is not None, help=opt.help)


def _check_command(info: checks.CheckInfo) -> click.Command:
    def callback(fmt: str, output: Optional[Path], **given: Any) -> None:
        cfg = click.get_current_context().find_object(Config)
        result = checks.run(cfg.store(cfg.target()), info.name, given)
        _emit(checks.RENDERERS[fmt](result), output)
        if output is not None:
            click.echo(f"written to {output}", err=True)
        if not result.healthy:
            click.echo("UNHEALTHY: " + "; ".join(result.reasons), err=True)
            sys.exit(1)

    params = [_option_param(opt) for opt in info.options] + [
        click.Option(["--format", "fmt"], type=click.Choice(sorted(checks.RENDERERS)),
                     default="text", show_default=True,
                     help="openmetrics: gauges for a node-exporter textfile collector or a "
                          "Prometheus scrape."),
        click.Option(["--output", "-o", "output"],
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the result to this file instead of stdout.")]
    fn = info.fn
    doc = (fn.__doc__ or info.summary).strip()
    return click.Command(info.name, params=params, callback=callback, help=doc,
                         short_help=info.summary)


@cli.group("check", cls=CheckGroup, invoke_without_command=True)
@click.option("--list", "list_", is_flag=True, help="List the installed checks, one line each.")
@click.pass_context
def check_group(ctx: click.Context, list_: bool) -> None:
    """Health checks to watch a collection after a cleanup (read-only; exit 1 if unhealthy).

    Checks are plugins, found through the entry-point group `fsmigrate.checks`.

    Example:

        fsmigrate --project my-proj check heartbeats --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    if not list_:
        click.echo(ctx.get_help())
        return
    for info in checks.catalogue():
        click.echo(f"{info.name:<20} {info.summary}")


# ---- emulator -----------------------------------------------------------------------------


@cli.group("emulator", cls=FsMigrateGroup)
def emulator_group() -> None:
    """Start, stop and inspect a local Firestore emulator (loopback only).

    Example:

        eval "$(fsmigrate emulator start)"; fsmigrate emulator stop
    """


RECORD_OPTION = click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
                             default=emu.DEFAULT_RECORD, show_default=True,
                             help="Where the running emulator's PID and port are kept.")


def _recorded_running(record: Path) -> Optional[emu.Emulator]:
    current = emu.load(record)
    if current and emu.pid_alive(current.pid) and emu.is_ready(current.host, current.port):
        return current
    return None


@emulator_group.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on [default: a free one].")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@RECORD_OPTION
def emulator_start(port: Optional[int], host: str, record: Path) -> None:
    """Start the emulator and print the `export FIRESTORE_EMULATOR_HOST=...` line.

    Example:

        eval "$(fsmigrate emulator start)"
    """
    current = _recorded_running(record)
    if current:
        raise FsMigrateError(f"an emulator is already running (pid {current.pid}, "
                             f"{current.host_port}); stop it with `fsmigrate emulator stop`")
    emu.check_loopback(host)
    log_dir = record.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    started = emu.start(port=port, host=host, log_dir=log_dir)
    emu.save(started, record)
    click.echo(f"export FIRESTORE_EMULATOR_HOST={started.host_port}")
    click.echo(f"emulator pid {started.pid} on {started.host_port}, log {started.log_path}",
               err=True)


@emulator_group.command("stop")
@RECORD_OPTION
def emulator_stop(record: Path) -> None:
    """Stop the emulator started by `fsmigrate emulator start` (by its recorded PID).

    Example:

        fsmigrate emulator stop
    """
    stopped = emu.stop_recorded(record)
    click.echo(f"stopped emulator pid {stopped.pid}" if stopped else "no emulator recorded")


@emulator_group.command("status")
@RECORD_OPTION
def emulator_status(record: Path) -> None:
    """Say whether the recorded emulator is running (exit 1 if not).

    Example:

        fsmigrate emulator status
    """
    current = _recorded_running(record)
    if current:
        click.echo(f"running: pid {current.pid} on {current.host_port}")
        return
    click.echo("not running")
    sys.exit(1)


def main() -> None:
    cli(prog_name="fsmigrate")
