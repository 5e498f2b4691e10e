"""The command line: parse options, build objects, call the core, print.

The only module that imports click or tqdm. Domain errors become one line on stderr,
`FAILED: ...` (`STOPPED: ...` for a run stopped on purpose), and the exit code the error
carries (README: Exit codes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import click
from tqdm import tqdm

from fsmigrate import __version__, api, checks, config
from fsmigrate.api import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_MARKERS,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_CONCURRENCY,
    MIN_BATCH_BYTES,
)
from fsmigrate.errors import (
    Aborted,
    FsMigrateError,
    Interrupted,
    RunStopped,
    StateCorrupt,
    UsageError,
)
from fsmigrate.files import private_file
from fsmigrate.firestore import emulator as emu
from fsmigrate.firestore.patience import format_seconds
from fsmigrate.report import checks as check_output
from fsmigrate.report import doctor as doctor_report
from fsmigrate.report import gate as gate_report
from fsmigrate.report import runs as report
from fsmigrate.report.envelope import envelope, error_dict

FORMATS_RUN = click.Choice(["text", "json", "markdown"])
FORMATS_LIST = click.Choice(["text", "json", "jsonl"])
FORMAT_HELP = "Output on stdout: text to read, json for scripts (docs/reference/json-output.md)."


def format_option(
    choice: click.Choice = click.Choice(["text", "json"]), help: str = FORMAT_HELP
) -> Callable[[Any], Any]:
    """A command's `--format` (text by default)."""
    return click.option(
        "--format", "fmt", type=choice, default="text", show_default=True, help=help
    )


@dataclass
class Config:
    """The global options: the api's Config plus what only the command line has. A
    command printing JSON names its shape in `json_command` (report.envelope); once its
    object is on stdout, `json_written`, so a failure does not print a second one."""

    api: api.Config
    traceback: bool
    json_command: Optional[str] = None
    json_written: bool = False

    def wants_json(self, command: str, fmt: str) -> None:
        if fmt == "json":
            self.json_command = command

    @property
    def state_path(self) -> Path:
        return self.api.state_path


class FsMigrateGroup(click.Group):
    """Turns FsMigrateError (and stray exceptions) into one line and an exit code; at the
    top, accepts the global options after the command too (`fsmigrate upgrade --project
    p`): they are moved before it, so they mean the same wherever they are written."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = _globals_first(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FsMigrateError as exc:
            if _want_traceback(ctx):
                raise
            word = "STOPPED" if isinstance(exc, RunStopped) else "FAILED"
            _failed(ctx, str(exc), exc.exit_code, exc, word=word)
        except sqlite3.DatabaseError as exc:
            if _want_traceback(ctx):
                raise
            cfg = ctx.find_object(Config)
            where = cfg.state_path if cfg else None
            corrupt = StateCorrupt(where, str(exc))
            _failed(ctx, str(corrupt), 1, corrupt)
        except BrokenPipeError:  # `fsmigrate audit ... | head`: stop quietly
            sys.stdout = open(os.devnull, "w")
            ctx.exit(1)
        except click.Abort:
            declined = Aborted("declined at the prompt")
            _failed(ctx, str(declined), 1, declined)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Interrupted)
            if ctx.parent is not None:
                raise
            code = getattr(exc, "exit_code", 130)
            _failed(ctx, _interrupted_line(exc, None), code, exc, word="INTERRUPTED")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if _want_traceback(ctx):
                raise
            _failed(
                ctx,
                f"unexpected {type(exc).__name__}: {exc} (rerun with --traceback for details)",
                1,
                exc,
            )


def _globals_first(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """`args` with the group's own options that follow the command moved before it. A
    command's option of the same name keeps its place (the command's wins)."""
    takes_value: dict[str, bool] = {}
    for param in group.get_params(ctx):
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("--"):
                    takes_value[name] = not (param.is_flag or param.count)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name = args[i].split("=", 1)[0]
        i += 2 if takes_value.get(name) and "=" not in args[i] else 1
    if i >= len(args) or args[i] == "--":
        return args
    command = group.get_command(ctx, args[i])
    own: set[str] = set()
    if command is not None:
        for param in command.get_params(ctx):  # with its --help
            if isinstance(param, click.Option):
                own.update(param.opts)
                own.update(param.secondary_opts)
    head, rest, moved = args[: i + 1], args[i + 1 :], []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            kept.extend(rest[j:])
            break
        name = token.split("=", 1)[0]
        if name in takes_value and name not in own:
            if takes_value[name] and "=" not in token and j + 1 < len(rest):
                moved.extend(rest[j : j + 2])
                j += 2
            else:
                moved.append(token)
                j += 1
            continue
        kept.append(token)
        j += 1
    return head[:i] + moved + head[i:] + kept


def _failed(
    ctx: click.Context, message: str, code: int, exc: BaseException, word: str = "FAILED"
) -> None:
    """The one line on stderr; the command's JSON object with the error on stdout when it
    prints JSON and has not printed it yet; exit `code`."""
    cfg = ctx.find_object(Config)
    if cfg is not None and cfg.json_command and not cfg.json_written:
        cfg.json_written = True
        click.echo(
            report.dumps(
                envelope(cfg.json_command, {}, exit_code=code, error=error_dict(exc, message))
            )
        )
    click.echo(f"{word}: {message}", err=True)
    ctx.exit(code)


def _interrupted_line(exc: BaseException, result: Optional[api.UpgradeResult]) -> str:
    """What committed before a signal stopped the command, and how to go on."""
    name = getattr(exc, "name", "SIGINT")
    runs = result.runs if result is not None else []
    if not runs:
        return f"stopped by {name} before any run started; nothing was written"
    last = runs[-1]
    if result is not None and result.dry_run:
        done = "nothing was written to Firestore (dry-run)"
    else:
        done = f"{report.plural(result.committed if result else 0, 'operation')} committed"
    return (
        f"stopped by {name}: run {last.run_id} ({last.revision}) recorded as interrupted, "
        f"{done}; run the same command again to resume (what committed is not redone)"
    )


def _want_traceback(ctx: click.Context) -> bool:
    cfg = ctx.find_object(Config)
    return bool(cfg and cfg.traceback) or "--traceback" in sys.argv


def _columns() -> int:
    """How wide a text table may be: the terminal's width when stdout is one (at least
    report.WIDTH); report.WIDTH when it is a pipe or a file, so that what a script reads
    does not depend on the terminal it ran from."""
    if not sys.stdout.isatty():
        return report.WIDTH
    return max(report.WIDTH, shutil.get_terminal_size((report.WIDTH, 24)).columns)


def _emit_result(cfg: Config, chunks: Iterable[str]) -> None:
    """Print a command's result on stdout (its JSON object, when it prints JSON)."""
    if cfg.json_command:
        cfg.json_written = True
    _emit(chunks)


def _emit(chunks: Iterable[str], path: Optional[Path] = None, echo: bool = False) -> None:
    """Print `chunks`, or write them to `path` (and print them too, with `echo`):
    atomically (a reader, a textfile collector or a ticket upload, never sees half a file;
    a failure leaves the old file as it was) and readable by the owner only, like every
    file fsmigrate writes: reports name documents, exports and audits hold their values
    (fsmigrate.files)."""
    if path is None:
        for piece in _joined(chunks):
            click.echo(piece, nl=False)
        return
    with private_file(path) as fh:
        for piece in _joined(chunks):
            if echo:
                click.echo(piece, nl=False)
            fh.write(piece)


def _joined(chunks: Iterable[str], size: int = 1 << 16) -> Iterator[str]:
    """`chunks` joined into pieces of at least `size` characters (the last may be
    shorter): a report of 50,000 operations is 50,000 chunks, and each echo asks whether
    stdout is a terminal."""
    pending: list[str] = []
    length = 0
    for chunk in chunks:
        pending.append(chunk)
        length += len(chunk)
        if length >= size:
            yield "".join(pending)
            pending, length = [], 0
    if pending:
        yield "".join(pending)


@click.group(cls=FsMigrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env",
    "env",
    default=None,
    metavar="NAME",
    help="Use the config file's environment NAME (or FSMIGRATE_ENV).",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file: a pyproject.toml with [tool.fsmigrate] or an fsmigrate.toml (or "
    "FSMIGRATE_CONFIG) [default: the nearest one from here up].",
)
@click.option(
    "--project",
    help="Google Cloud project (or FSMIGRATE_PROJECT, the config file, GOOGLE_CLOUD_PROJECT).",
)
@click.option(
    "--database",
    default=None,
    help="Firestore database id (or FSMIGRATE_DATABASE) [default: (default)].",
)
@click.option(
    "--state",
    "state_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite state file (or FSMIGRATE_STATE) [default: state.db].",
)
@click.option(
    "--migrations",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of migration scripts (or FSMIGRATE_MIGRATIONS) [default: migrations].",
)
@click.option(
    "--markers-collection",
    "markers_root",
    default=None,
    help="Top-level collection of fsmigrate's own documents in the target "
    "(markers of applied revisions, the lock); never scanned as user data (or "
    f"FSMIGRATE_MARKERS) [default: {DEFAULT_MARKERS}].",
)
@click.option(
    "--patience",
    default=None,
    metavar="DURATION",
    help="How long to keep retrying Firestore while nothing makes progress (an outage), "
    "e.g. 10m, 90s, 1h (or FSMIGRATE_PATIENCE) [default: 10m]. An apply also stops when "
    "its lock cannot be renewed in time (docs/network-failures.md).",
)
@click.option(
    "--endpoint",
    default=None,
    metavar="HOST[:PORT]",
    help="Reach Firestore here instead of firestore.googleapis.com: a Private Service "
    "Connect endpoint, a proxy (or FSMIGRATE_ENDPOINT); TLS, port 443 by default. Not with "
    "FIRESTORE_EMULATOR_HOST.",
)
@click.option(
    "--credentials",
    "credentials",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Credentials file, e.g. a service account key (or FSMIGRATE_CREDENTIALS) "
    "[default: the application default credentials: GOOGLE_APPLICATION_CREDENTIALS, "
    "gcloud's, the metadata server's].",
)
@click.option(
    "--impersonate-service-account",
    "impersonate",
    default=None,
    metavar="EMAIL",
    help="Act as this service account, with the credentials above (they need the Service "
    "Account Token Creator role on it) (or FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT).",
)
@click.option(
    "--quota-project",
    default=None,
    metavar="PROJECT",
    help="The project billed for the calls, whose quota they use (or the config file, "
    "GOOGLE_CLOUD_QUOTA_PROJECT) [default: the credentials' own].",
)
@click.option(
    "--create-state-dir",
    is_flag=True,
    envvar="FSMIGRATE_CREATE_STATE_DIR",
    help="Create the --state file's directory when it does not exist (else refused: a "
    "typo would start a fresh audit trail).",
)
@click.option("--traceback", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(__version__, prog_name="fsmigrate")
@click.pass_context
def cli(
    ctx: click.Context,
    env: Optional[str],
    config_path: Optional[Path],
    project: Optional[str],
    database: Optional[str],
    state_path: Optional[Path],
    migrations: Optional[Path],
    markers_root: Optional[str],
    patience: Optional[str],
    endpoint: Optional[str],
    credentials: Optional[Path],
    impersonate: Optional[str],
    quota_project: Optional[str],
    create_state_dir: bool,
    traceback: bool,
) -> None:
    """Versioned, forward-only, audited migrations for Google Cloud Firestore.

    The emulator is used when FIRESTORE_EMULATOR_HOST is set; otherwise Google Cloud, with
    the application default credentials unless --credentials or
    --impersonate-service-account say otherwise. Settings come from a flag,
    else an environment variable, else the config file's environment (--env), else its
    defaults ([tool.fsmigrate] in pyproject.toml, or fsmigrate.toml; `fsmigrate config`
    shows each and where it came from).
    The global options may also follow the command; FIRESTORE_EMULATOR_HOST must be a
    loopback address.

    Example:

        fsmigrate --env stage upgrade --dry-run
    """
    if markers_root is not None and (not markers_root or "/" in markers_root):
        raise click.BadParameter(
            "must be a top-level collection id", param_hint="--markers-collection"
        )
    ctx.obj = Config(api.Config(), traceback)  # errors below still find --traceback
    given = config.Given()
    flags = {
        "project": (project, "--project"),
        "database": (database, "--database"),
        "state": (state_path, "--state"),
        "migrations": (migrations, "--migrations"),
        "markers-collection": (markers_root, "--markers-collection"),
        "patience": (patience, "--patience"),
        "endpoint": (endpoint, "--endpoint"),
        "credentials": (credentials, "--credentials"),
        "impersonate-service-account": (impersonate, "--impersonate-service-account"),
        "quota-project": (quota_project, "--quota-project"),
    }
    for name, (value, flag) in flags.items():
        if value is not None:
            given.flags[name] = str(value)
            given.flag_names[name] = flag
    if create_state_dir:
        given.flags["create-state-dir"] = True
        given.flag_names["create-state-dir"] = "--create-state-dir"
    settings = config.load(config_path, env, given, os.environ)
    resolved = api.Config.from_settings(settings)
    if patience is not None:
        resolved = replace(resolved, patience=patience)
    ctx.obj = Config(resolved, traceback)
    ctx.call_on_close(api.close)  # the channels the command opened
    ctx.with_resource(_warnings_to_stderr())
    ctx.with_resource(_sigterm_interrupts())


@contextlib.contextmanager
def _sigterm_interrupts() -> Any:
    """SIGTERM raises `Interrupted` in the main thread, as Ctrl-C raises KeyboardInterrupt:
    a run it stops settles its batches in flight and is recorded as interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_to_stderr() -> Any:
    """fsmigrate's warnings (api.FsMigrateWarning) as `WARNING: ...` lines on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", api.FsMigrateWarning)
        shown = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, api.FsMigrateWarning):
                click.echo(f"WARNING: {message}", err=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


# ---- new -------------------------------------------------------------------------------


@cli.command("new")
@click.argument("message")
@click.pass_obj
def new_cmd(cfg: Config, message: str) -> None:
    """Write the next migration script from a template.

    Example:

        fsmigrate new "normalize heartbeat ids"
    """
    click.echo(f"created {api.new(cfg.api, message)}")


# ---- status / history / verify -------------------------------------------------------------


LOCAL_OPTION = click.option(
    "--local", is_flag=True, help="Only the state file: do not read the markers in the database."
)


@cli.command("status")
@format_option(
    click.Choice(["text", "json", "markdown"]),
    help="markdown (with --check): a pull-request comment.",
)
@LOCAL_OPTION
@click.option(
    "--check",
    is_flag=True,
    help="CI gate: exit 1 with the reasons when the scripts do not load, an applied script "
    "changed, or migrations are pending; 0 when the target is up to date.",
)
@click.option(
    "--plan",
    is_flag=True,
    help="With --check: dry-run the pending migrations for their counts (recorded in the "
    "state file like any dry-run).",
)
@click.option("--quiet", is_flag=True, help="No progress bar (with --plan).")
@click.pass_obj
def status_cmd(cfg: Config, fmt: str, local: bool, check: bool, plan: bool, quiet: bool) -> None:
    """Show each migration as applied, applied elsewhere, or pending (read-only).

    Reads the state file and the markers in the target database (the shared record of
    what is applied, wherever from); --local reads only the state file. A revision the
    target applied from another script (another branch's migration of the same number)
    shows as `applied (different script)`. A run holding the target's lock is shown with
    its progress, rate, and whether it is paused.

    With --check it is a CI gate (exit 1 and why, else 0); --format markdown writes a
    pull-request comment, with each pending migration's dry-run counts when --plan.

    Examples:

        fsmigrate --project my-proj status --format json

        fsmigrate --env stage status --check --plan --format markdown > comment.md
    """
    if plan and not check:
        raise UsageError("--plan needs --check")
    if not check:
        if fmt == "markdown":
            raise UsageError("--format markdown needs --check (a pull-request comment)")
        cfg.wants_json("status", fmt)
        status = api.status(cfg.api, local=local)
        _emit_result(cfg, report.status_chunks(status, fmt, width=_columns()))
        return
    gate = api.status_check(cfg.api, local=local, plan=plan, progress=_Bar(quiet))
    _emit(gate_report.chunks(gate, fmt))
    if not gate.ok:
        for reason in gate.reasons:
            click.echo(f"CHECK FAILED: {reason}", err=True)
        sys.exit(1)


@cli.command("config")
@format_option()
@click.pass_obj
def config_cmd(cfg: Config, fmt: str) -> None:
    """Show the resolved settings and where each came from (read-only).

    The order: a flag, then an environment variable, then the environment's key
    (--env NAME or FSMIGRATE_ENV), then the config file's defaults ([tool.fsmigrate] in
    pyproject.toml, or fsmigrate.toml), then fsmigrate's own.

    Example:

        fsmigrate --env prod config --format json
    """
    _emit(gate_report.config_chunks(api.config(cfg.api), fmt))


@cli.command("rebase")
@click.argument("names", nargs=-1, required=True, metavar="REVISION [REVISION...]")
@click.option("--dry-run", is_flag=True, help="Show the renames; change no file.")
@click.option("--only", is_flag=True, help="Move only the named scripts, not the ones after them.")
@LOCAL_OPTION
@format_option()
@click.pass_obj
def rebase_cmd(
    cfg: Config, names: tuple[str, ...], dry_run: bool, only: bool, local: bool, fmt: str
) -> None:
    """Move this branch's migrations on top of the current head (renumber them).

    REVISION is this branch's first migration, by revision or, when two scripts share
    it (both branches added 0005), by file name; the scripts after it on this branch
    follow. Each gets the next free number: the file is renamed (slug kept), `revision`
    rewritten, and the first one's `down_revision` set to the head. Refused when a moved
    script is applied anywhere this can see: the state file's targets, and the target's
    markers (--local: only the state file).

    Example:

        fsmigrate rebase 0005_add_orders_index.py --dry-run
    """
    done = api.rebase(cfg.api, names, dry_run=dry_run, local=local, only=only)
    _emit(gate_report.rebase_chunks(done, fmt))


@cli.command("history")
@format_option(
    FORMATS_LIST,
    help="Output on stdout: text to read; json (one object) or jsonl (one run a line) for scripts.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N runs only.")
@click.pass_obj
def history_cmd(cfg: Config, fmt: str, limit: Optional[int]) -> None:
    """List the runs (dry-runs and applies) recorded for the target, newest first.

    Example:

        fsmigrate --project my-proj history --limit 20
    """
    cfg.wants_json("history", fmt)
    runs = [r.to_json() for r in api.history(cfg.api, limit)]
    chunks = report.runs_chunks(
        runs, fmt, command="history", target=cfg.api.target(), width=_columns()
    )
    _emit_result(cfg, chunks)


@cli.command("verify")
@format_option()
@LOCAL_OPTION
@click.pass_obj
def verify_cmd(cfg: Config, fmt: str, local: bool) -> None:
    """Check that applied migrations still match their scripts (exit 1 if not).

    Reports scripts edited since they were applied and applied scripts now missing. A
    repeatable script edited since its last run is listed but is not drift (exit 0): its
    next run applies and records the new version.

    Example:

        fsmigrate --project my-proj verify
    """
    cfg.wants_json("verify", fmt)
    findings = api.verify(cfg.api, local=local)
    _emit_result(cfg, report.findings_chunks([f.to_json() for f in findings], fmt))
    if any(f.blocking for f in findings):
        sys.exit(1)


@cli.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@format_option()
@click.pass_obj
def lint_cmd(cfg: Config, paths: tuple[Path, ...], fmt: str) -> None:
    """Check migration scripts statically before review (exit 1 on errors).

    Reads the migrations directory (or the PATHS given: scripts or directories) without
    importing the scripts or reaching Firestore, so it needs no credentials. One line per
    finding, `file:line:col: CODE severity: message`; warnings alone exit 0. Silence a
    finding with `# fsmigrate: allow CODE` on its line (codes: README, Lint).

    Example:

        fsmigrate --migrations migrations lint --format json
    """
    found = api.lint(cfg.api, paths)
    _emit(found.chunks(fmt))
    if not found.ok:
        sys.exit(1)


@cli.command("doctor")
@format_option()
@click.pass_obj
def doctor_cmd(cfg: Config, fmt: str) -> None:
    """Check the target before a run: what it would refuse (exit 1 if a check fails).

    Says which principal the credentials act as, then one line per check, ok / warn /
    fail / skip, with the next step: the database exists and is in Native mode,
    point-in-time recovery (how far back --as-of reaches), delete protection (the admin
    API; the emulator has none), a read, a write and a delete of a probe document under
    the markers collection (never your data), and each pending migration's declared
    query (`source = scan(...)`: a missing composite index is named, with the command
    that creates it).

    Example:

        fsmigrate --project my-proj doctor
    """
    cfg.wants_json("doctor", fmt)
    found = api.doctor(cfg.api)
    _emit_result(cfg, doctor_report.chunks(found, fmt))
    if not found.ok:
        sys.exit(1)


# ---- upgrade --------------------------------------------------------------------------------


class _Bar:
    """tqdm progress for the runner; silent when quiet or not a TTY. Counts operations,
    with a total, percentage and ETA when it is known before (a plan's, a restore's);
    when a migration scans, documents read against a COUNT taken first (the operations
    then beside it). The traffic limit in force is shown after the rate."""

    def __init__(self, quiet: bool) -> None:
        self.disable = quiet or not sys.stderr.isatty()
        self.bar: Optional[tqdm] = None
        self.waiting_since: Optional[float] = None  # when the current wait was last logged
        self.logged_at = 0.0
        self.ops = 0
        self.unit = "op"
        self.shown_limit = ""

    @property
    def wants_total(self) -> bool:
        """Worth a COUNT before a scan: only when the bar is shown."""
        return not self.disable

    def start(self, script: Any, mode: str) -> None:
        self.ops, self.unit, self.shown_limit = 0, "op", ""
        self.bar = tqdm(
            desc=f"{script.revision} {mode}",
            unit="op",
            disable=self.disable,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def expect(self, total: int, unit: str) -> None:
        """The total is known: `total` operations, or documents a scan will read (scans
        of one run add up)."""
        if self.bar is None:
            return
        if unit == "doc" and self.unit != "doc":
            self.unit = "doc"
            self.bar.unit = "doc"
            self.bar.reset(total=total)
        else:
            self.bar.total = (self.bar.total or 0) + total if unit == "doc" else total
            self.bar.refresh()

    def advance(self, n: int) -> None:
        self.ops += n
        if self.bar is None:
            return
        if self.unit == "op":
            self.bar.update(n)
        else:
            self._postfix()

    def read(self, n: int) -> None:
        if self.bar is not None and self.unit == "doc":
            self.bar.update(n)

    def limit(self, ops_per_s: Optional[float]) -> None:
        """The traffic limit in force (shown after the rate when there is one)."""
        if ops_per_s is not None:
            text = f"limit {ops_per_s:,.0f} ops/s"
            if text != self.shown_limit:
                self.shown_limit = text
                self._postfix()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        parts = [f"{self.ops:,} ops"] if self.unit == "doc" else []
        if self.shown_limit:
            parts.append(self.shown_limit)
        self.bar.set_postfix_str(", ".join(parts), refresh=False)

    def waiting(self, message: Optional[str]) -> None:
        """Waiting for Firestore: on the bar, and a log line on stderr when the wait begins,
        every minute while it lasts, and when it ends (also without a bar: for the logs of
        an unattended job)."""
        now = time.monotonic()
        if message is None:
            if self.waiting_since is not None:
                waited = format_seconds(now - self.waiting_since)
                self._log(f"Firestore answers again (waited {waited})")
                self.waiting_since = None
                self._postfix()
            return
        if self.waiting_since is None:
            self.waiting_since = self.logged_at = now
            self._log(message)
        elif now - self.logged_at >= 60:
            self.logged_at = now
            self._log(message)
        if self.bar is not None:
            self.bar.set_postfix_str(message)

    def _log(self, text: str) -> None:
        line = f"{dt.datetime.now(dt.timezone.utc):%H:%M:%SZ} {text}"
        if self.bar is not None and not self.disable:
            tqdm.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _report_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".json": "json", ".md": "markdown", ".markdown": "markdown"}.get(suffix, "text")


def traffic_options(fn: Any) -> Any:
    """The traffic limits every writing command takes."""
    for option in reversed(
        [
            click.option(
                "--max-rate",
                type=click.FloatRange(0, min_open=True),
                default=None,
                metavar="OPS",
                help="Hard cap: operations per second, all commit threads together.",
            ),
            click.option(
                "--ramp/--no-ramp",
                default=None,
                help="Ramp up traffic: start at --ramp-start ops/s, +50% every 5 "
                "minutes (FSMIGRATE_RAMP=START/PERCENT/MINUTES) [default: on for "
                "a real project, off on the emulator].",
            ),
            click.option(
                "--ramp-start",
                type=click.FloatRange(0, min_open=True),
                default=None,
                metavar="OPS",
                help="Where the ramp starts (turns it on) [default: 500].",
            ),
            click.option(
                "--max-skip-ratio",
                type=click.FloatRange(0, 1, max_open=True),
                default=None,
                metavar="RATIO",
                help="Stop the run by itself (like `fsmigrate control stop`) when more than "
                "this share of its last 1,000 operations were skipped because something "
                "else wrote to their documents, e.g. 0.05.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def run_options(fn: Any) -> Any:
    """The options `upgrade` and `rerun` share."""
    fn = traffic_options(fn)
    for option in reversed(
        [
            click.option(
                "--dry-run", is_flag=True, help="Plan and report; write nothing to Firestore."
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(1, MAX_BATCH),
                default=None,
                help=f"Operations per atomic commit [default: {MAX_BATCH}, or the config].",
            ),
            click.option(
                "--batch-bytes",
                type=click.IntRange(MIN_BATCH_BYTES, MAX_BATCH_BYTES),
                default=None,
                help="Encoded bytes per commit (the emulator refuses requests over 4 MiB, "
                "production over 10 MiB; up to 9.5 MiB is safe there) "
                f"[default: {DEFAULT_BATCH_BYTES}, or the config].",
            ),
            format_option(
                FORMATS_RUN, help="Output on stdout (text shows a sample of the documents)."
            ),
            click.option(
                "--report",
                "report_path",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Also write the full report (every document) here; .json / .md / text.",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(1, MAX_CONCURRENCY),
                default=None,
                help="Batches committed at once while the next ones are planned. Above "
                "1, batches may land out of order (migrations yield ctx.barrier() "
                "where order matters) [default: 1, or the config].",
            ),
            click.option(
                "--yes", is_flag=True, help="Do not ask for confirmation on a real project."
            ),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
    ):
        fn = option(fn)
    return fn


def _beam_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        out[key.strip().lstrip("-")] = text
    return out


def runner_options(fn: Any) -> Any:
    """Where `upgrade` and `rerun` plan and apply: here, or on Apache Beam."""
    for option in reversed(
        [
            click.option(
                "--runner",
                type=click.Choice(["local", "beam"]),
                default=None,
                help="beam: plan and apply on an Apache Beam pipeline (the script must "
                "declare a source with each/key+merge; needs fsmigrate[beam]) "
                "[default: local, or the config].",
            ),
            click.option(
                "--workers",
                type=click.IntRange(1, 64),
                default=None,
                help="With --runner beam: worker processes of the local DirectRunner "
                "[default: 2, or the config].",
            ),
            click.option(
                "--beam-option",
                "beam_options",
                multiple=True,
                callback=_beam_options,
                metavar="KEY=VALUE",
                help="With --runner beam: a pipeline option (repeatable), e.g. "
                "runner=DataflowRunner, project=..., region=..., "
                "temp_location=gs://...; journal=DIR or gs://... for the workers' "
                "batch files.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def snapshot_option(fn: Any) -> Any:
    """When the plans of `upgrade` and `rerun` read the database."""
    return click.option(
        "--as-of",
        "as_of",
        default=None,
        metavar="TIME",
        help="Plan at this instant: an RFC 3339 time or an age like 30m (Firestore keeps "
        "versions 1 hour, 7 days with point-in-time recovery) [default: when the plan "
        "starts].",
    )(fn)


@cli.command("upgrade")
@click.option("--to", "to", default=None, help="Stop after this revision.")
@click.option(
    "--plan-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dry-run: write the exact plan (every write, precondition and "
    "before-image) for `fsmigrate apply`.",
)
@run_options
@runner_options
@snapshot_option
@click.pass_obj
def upgrade_cmd(cfg: Config, to: Optional[str], plan_out: Optional[Path], **run: Any) -> None:
    """Run the pending migrations in order (or plan them with --dry-run).

    A dry-run writes nothing to Firestore and is recorded in the state file, so the audit
    shows who looked before applying. Against a real project (no FIRESTORE_EMULATOR_HOST)
    an apply asks for confirmation unless --yes.

    Example:

        fsmigrate --project my-proj upgrade --dry-run --report plan.md
    """
    _run_command(
        "upgrade",
        lambda options, **kw: api.upgrade(cfg.api, options, to=to, plan_out=plan_out, **kw),
        **run,
    )


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
    if run.pop("dry_run"):
        raise UsageError("apply has no --dry-run: the plan file is the dry-run")
    _run_command(
        "apply",
        lambda options, dry_run, **kw: api.apply_plan(cfg.api, plan_path, options, **kw),
        **run,
    )


@cli.command("rerun")
@click.argument("revision")
@run_options
@runner_options
@snapshot_option
@click.option(
    "--apply-hint",
    hidden=True,
    default=report.APPLY_HINT,
    help="How the dry-run report says to apply (for wrapper scripts).",
)
@click.pass_obj
def rerun_cmd(cfg: Config, revision: str, **run: Any) -> None:
    """Run one repeatable migration again, applied or not (e.g. a cleanup to repeat).

    Only scripts that declare `repeatable = True` (their plan is computed from the
    current data, so running it again is safe) can be rerun. Every rerun is recorded
    like an upgrade.

    Example:

        fsmigrate --project my-proj rerun 0001 --dry-run
    """
    _run_command("rerun", lambda options, **kw: api.rerun(cfg.api, revision, options, **kw), **run)


def _run_command(
    command: str,
    call: Callable[..., api.UpgradeResult],
    *,
    fmt: str,
    report_path: Optional[Path],
    yes: bool,
    quiet: bool,
    dry_run: bool = False,
    apply_hint: str = report.APPLY_HINT,
    **given: Any,
) -> None:
    """Call one writing api function with its run options (the flags given, as one
    `api.RunOptions`), then print its report: what it did, or what it did before a
    failure or a signal stopped it (then raised: one line on stderr, the exit code)."""
    cfg = click.get_current_context().find_object(Config)
    assert cfg is not None
    cfg.wants_json(command, fmt)
    options = api.RunOptions(**given)

    confirm = _confirmer(yes)

    def outcome(error: Optional[BaseException], code: int, result: Any) -> report.Outcome:
        plan = result.plan if result is not None else None
        return report.Outcome(
            command=command,
            dry_run=dry_run,
            error=error,
            exit_code=code,
            plan=_plan_json(plan),
            warnings=list(result.warnings) if result is not None else [],
            apply_hint=apply_hint,
        )

    bar = _Bar(quiet)
    try:
        result = call(options, progress=bar, confirm=confirm, dry_run=dry_run)
    except FsMigrateError as exc:
        bar.finish()
        partial = getattr(exc, "partial", None)
        if partial is not None:
            _report_runs(cfg, partial, fmt, report_path, outcome(exc, exc.exit_code, partial))
        raise
    except KeyboardInterrupt as exc:
        bar.finish()
        partial = getattr(exc, "partial", None)
        code = getattr(exc, "exit_code", 130)
        line = _interrupted_line(exc, partial)
        if partial is not None:
            _report_runs(cfg, partial, fmt, report_path, outcome(exc, code, partial), line)
        ctx = click.get_current_context()
        _failed(ctx, line, code, exc, word="INTERRUPTED")
        return
    _report_runs(cfg, result, fmt, report_path, outcome(None, 0, result))
    if result.plan is not None:
        click.echo(
            f"plan {result.plan.plan_id} written to {result.plan.path} "
            f"({report.plural(result.plan.operations, 'operation')}, "
            f"sha256 {result.plan.digest})",
            err=True,
        )


def _confirmer(yes: bool) -> Callable[[str], bool]:
    """The prompt, or --yes (refused for an environment that always asks unless it was
    named with --env on the command line)."""
    if yes:
        cfg = click.get_current_context().find_object(Config)
        if cfg is not None and cfg.api.settings is not None:
            cfg.api.settings.check_yes()

    def confirm(prompt: str) -> bool:
        return yes or click.confirm(prompt, abort=True, err=True)

    return confirm


def _plan_json(plan: Any) -> Optional[dict[str, Any]]:
    if plan is None:
        return None
    return {
        "path": str(plan.path),
        "plan_id": plan.plan_id,
        "operations": plan.operations,
        "sha256": plan.digest,
    }


def _report_runs(
    cfg: Config,
    result: api.UpgradeResult,
    fmt: str,
    report_path: Optional[Path],
    outcome: report.Outcome,
    interrupted: Optional[str] = None,
) -> None:
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if cfg.json_command:
        cfg.json_written = True

    def chunks(fmt: str, full: bool) -> Iterator[str]:
        return report.upgrade_chunks(
            result.state, result.run_ids, result.target, fmt, full=full, outcome=outcome
        )

    if report_path is None:
        _emit(chunks(fmt, full=False))
    else:
        file_fmt = _report_format(report_path)
        if fmt == file_fmt == "json":  # the same JSON for both (every operation): once
            _emit(chunks(fmt, full=True), report_path, echo=True)
        else:
            _emit(chunks(fmt, full=False))
            _emit(chunks(file_fmt, full=True), report_path)
        click.echo(f"report written to {report_path}", err=True)
    if result.skipped:
        click.echo(
            f"WARNING: {report.plural(result.skipped, 'operation')} skipped: the "
            "document changed after it was planned; see the report",
            err=True,
        )


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
    marked = api.resolve(cfg.api, revision, reason=reason)
    click.echo(
        f"revision {marked.revision} marked applied by run {marked.run_id} "
        f"({marked.kind}: {marked.reason})"
    )


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
    for marked in api.stamp(cfg.api, revision, reason=reason):
        click.echo(
            f"revision {marked.revision} marked applied by run {marked.run_id} "
            f"({marked.kind}: {marked.reason})"
        )


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
    holder = api.break_lock(cfg.api)
    if holder is None:
        click.echo("no lock is held")
        return
    click.echo(
        f"WARNING: broke the lock held by {holder.description}; if that runner is "
        "still working, two runners may now apply at once",
        err=True,
    )
    click.echo("lock removed")


@cli.command("control")
@click.argument("action", type=click.Choice(list(api.CONTROL_ACTIONS)))
@click.argument("value", required=False)
@click.option("--reason", default=None, help="With stop: why (kept with the run).")
@format_option()
@click.pass_obj
def control_cmd(
    cfg: Config, action: str, value: Optional[str], reason: Optional[str], fmt: str
) -> None:
    """Pause, resume, re-rate or stop the run holding the target's lock, from anywhere.

    ACTION is pause, resume, rate (VALUE: operations per second, a new cap; the ramp
    still bounds it) or stop. The run (its runner, or every Beam worker) takes it at its
    next batch boundary, within a few seconds: a paused run keeps its lock and commits
    nothing; a stopped run lets its batches in flight settle, is recorded as stopped,
    and releases the lock; the next `upgrade` goes on from there. Every event is kept
    in the run's record and audit with who sent it and when; `fsmigrate status` shows
    the run's progress and whether it is paused.

    Examples:

        fsmigrate --project my-proj control pause

        fsmigrate --project my-proj control rate 200

        fsmigrate --project my-proj control stop --reason "latency alarm"
    """
    if action == "rate" and value is None:
        raise UsageError("control rate needs a number of operations per second: control rate 200")
    if action == "stop":
        if value is not None and reason is not None:
            raise UsageError("give the reason of a stop once: control stop --reason TEXT")
        value = reason if reason is not None else value
    elif reason is not None:
        raise UsageError("--reason goes with control stop")
    elif action != "rate" and value is not None:
        raise UsageError(f"control {action} takes no value, got {value!r}")
    sent = api.control(cfg.api, action, value)
    if fmt == "json":
        _emit([json.dumps(sent.to_json(), sort_keys=True) + "\n"])
        return
    what = f"{sent.action} {sent.value}" if sent.value else sent.action
    click.echo(
        f"sent {what} (event {sent.seq}) to the run of {sent.holder}; it takes it at its "
        "next batch boundary (`fsmigrate status` shows when)"
    )


@cli.command("restore")
@click.argument("run_id")
@click.option("--doc", "docs", multiple=True, help="Only this document path (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; write nothing.")
@format_option(FORMATS_RUN, help="Output on stdout (text shows a sample of the documents).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the full report (every document) here; .json / .md / text.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a real project.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--batch-bytes",
    type=click.IntRange(MIN_BATCH_BYTES, MAX_BATCH_BYTES),
    default=None,
    help=f"Encoded bytes per commit [default: {DEFAULT_BATCH_BYTES}, or the config].",
)
@traffic_options
@click.pass_obj
def restore_cmd(
    cfg: Config,
    run_id: str,
    docs: tuple[str, ...],
    dry_run: bool,
    fmt: str,
    report_path: Optional[Path],
    yes: bool,
    quiet: bool,
    batch_bytes: Optional[int],
    **limits: Any,
) -> None:
    """Write a run's archived before-images back, where the document does not exist now.

    Forward, never a rollback: a new, audited run that creates each document deleted or
    changed by RUN_ID from its exact archived copy, with the precondition "must not exist";
    documents that exist now are left alone and listed.

    Example:

        fsmigrate --project my-proj restore 20261128T120000Z-a1b2c3 --doc users/u1 --dry-run
    """
    _run_command(
        "restore",
        lambda options, **kw: api.restore(cfg.api, run_id, options, docs=docs, **kw),
        dry_run=dry_run,
        fmt=fmt,
        report_path=report_path,
        yes=yes,
        quiet=quiet,
        batch_bytes=batch_bytes,
        **limits,
    )


@cli.command("prune")
@click.option(
    "--before",
    required=True,
    help="Prune runs finished before this: an age (90d, 12h) or a date "
    "(2026-01-31, UTC unless it says otherwise).",
)
@click.option("--dry-run", is_flag=True, help="List what would be pruned; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@format_option()
@click.pass_obj
def prune_cmd(cfg: Config, before: str, dry_run: bool, yes: bool, fmt: str) -> None:
    """Drop the before-images and journaled writes of the target's old runs (retention).

    The runs stay, with their counts, checksums, notes, and each document's path, update
    time and outcome; the copies of the documents are overwritten and the file is rebuilt
    (VACUUM), so they are gone from it and the space is given back. The prune is itself an
    audited run. Runs whose journal is still needed (operations pending) are kept. Plan
    files and exports are separate files: delete them yourself.

    Example:

        fsmigrate --project my-proj prune --before 90d --dry-run
    """
    cfg.wants_json("prune", fmt)
    result = api.prune(cfg.api, before=before, dry_run=dry_run, confirm=_confirmer(yes))
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    _emit_result(cfg, report.prune_chunks(result, fmt))


# ---- audit --------------------------------------------------------------------------------


@cli.command("audit")
@click.argument("run_id", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "jsonl", "markdown", "html"]),
    default="text",
    show_default=True,
    help="jsonl/json include each document's before-image and after-image; "
    "markdown and html are a report for a change ticket (with RUN_ID).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Newest N runs only (when listing runs).",
)
@click.option("--since", default=None, help="Only runs started within this long: 7d, 12h...")
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's before-images to this JSON-lines file.",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of stdout.",
)
@click.pass_obj
def audit_cmd(
    cfg: Config,
    run_id: Optional[str],
    fmt: str,
    limit: Optional[int],
    since: Optional[str],
    export_path: Optional[Path],
    output: Optional[Path],
) -> None:
    """List recorded runs (newest first), or one run's operations, report or archive.

    Read-only: never creates the state file.

    Examples:

        fsmigrate audit --since 7d

        fsmigrate audit 20261128T120000Z-a1b2c3 --format markdown -o change-ticket.md

        fsmigrate audit 20261128T120000Z-a1b2c3 --export before-images.jsonl
    """
    if run_id is None and (fmt in ("markdown", "html") or export_path):
        raise UsageError("--format markdown/html and --export need a RUN_ID")
    if run_id is None and output is None:
        cfg.wants_json("audit", fmt)
    found = api.audit(cfg.api, run_id, since=since, limit=limit)
    if isinstance(found, list):
        _emit(
            report.runs_chunks(
                [r.to_json() for r in found],
                fmt if fmt in ("json", "jsonl") else "text",
                command="audit",
            ),
            output,
        )
        return
    if export_path is not None:
        _emit(found.before_images(), export_path)
        click.echo(f"before-images written to {export_path}", err=True)
        return
    _emit(found.chunks(fmt), output)


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
    return click.Option(
        [opt.flag, opt.name],
        type=kind,
        default=opt.default,
        show_default=opt.default is not None,
        help=opt.help,
    )


def _check_command(info: checks.CheckInfo) -> click.Command:
    @click.pass_obj
    def callback(cfg: Config, fmt: str, output: Optional[Path], **given: Any) -> None:
        result = api.check(cfg.api, info.name, **given)
        _emit(check_output.RENDERERS[fmt](result), output)
        if output is not None:
            click.echo(f"written to {output}", err=True)
        if not result.healthy:
            click.echo("UNHEALTHY: " + "; ".join(result.reasons), err=True)
            sys.exit(1)

    params: list[click.Parameter] = [_option_param(opt) for opt in info.options]
    params += [
        click.Option(
            ["--format", "fmt"],
            type=click.Choice(sorted(check_output.RENDERERS)),
            default="text",
            show_default=True,
            help="openmetrics: gauges for a node-exporter textfile collector or a "
            "Prometheus scrape; html: a standalone page with charts.",
        ),
        click.Option(
            ["--output", "-o", "output"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the result to this file instead of stdout.",
        ),
    ]
    fn = info.fn
    doc = (fn.__doc__ or info.summary).strip()
    return click.Command(
        info.name, params=params, callback=callback, help=doc, short_help=info.summary
    )


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
    for name, summary in checks.catalogue():
        click.echo(f"{name:<20} {summary}")


# ---- emulator -----------------------------------------------------------------------------


@cli.group("emulator", cls=FsMigrateGroup)
def emulator_group() -> None:
    """Start, stop and inspect a local Firestore emulator (loopback only).

    Example:

        eval "$(fsmigrate emulator start)"; fsmigrate emulator stop
    """


RECORD_OPTION = click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=emu.DEFAULT_RECORD,
    show_default=True,
    help="Where the running emulator's PID and port are kept.",
)


def _recorded_running(record: Path) -> Optional[emu.Emulator]:
    current = emu.load(record)
    if current and emu.pid_alive(current.pid) and emu.is_ready(current.host, current.port):
        return current
    return None


@emulator_group.command("start")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on [default: a free one].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@RECORD_OPTION
def emulator_start(port: Optional[int], host: str, record: Path) -> None:
    """Start the emulator and print the `export FIRESTORE_EMULATOR_HOST=...` line.

    Example:

        eval "$(fsmigrate emulator start)"
    """
    current = _recorded_running(record)
    if current:
        raise FsMigrateError(
            f"an emulator is already running (pid {current.pid}, "
            f"{current.host_port}); stop it with `fsmigrate emulator stop`"
        )
    emu.check_loopback(host)
    log_dir = record.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    started = emu.start(port=port, host=host, log_dir=log_dir)
    emu.save(started, record)
    click.echo(f"export FIRESTORE_EMULATOR_HOST={started.host_port}")
    click.echo(
        f"emulator pid {started.pid} on {started.host_port}, log {started.log_path}", err=True
    )


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
    """Say whether an emulator is running (exit 1 if not): the one recorded by `emulator
    start`, else the one FIRESTORE_EMULATOR_HOST names (a loopback address only).

    Example:

        fsmigrate emulator status
    """
    current = _recorded_running(record)
    if current:
        click.echo(f"running: pid {current.pid} on {current.host_port}")
        return
    host_port = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host_port:
        emu.check_emulator_host(host_port)
        host, port = emu.split_host_port(host_port)
        if emu.is_ready(host, port):
            click.echo(f"running: answering on {host_port} (FIRESTORE_EMULATOR_HOST)")
            return
        click.echo(f"not running: nothing answers on {host_port} (FIRESTORE_EMULATOR_HOST)")
        sys.exit(1)
    click.echo(f"not running (none recorded in {record}, FIRESTORE_EMULATOR_HOST not set)")
    sys.exit(1)


def main() -> None:
    cli(prog_name="fsmigrate")
