"""The SQLite state file: runs, applied revisions and the per-document audit.

The backend owns its tables and versions its own schema (table `meta`). Everything is
keyed by (project, database), so one file can serve the emulator and production.
Read-only users open the file read-only and never create it. The file (and SQLite's -wal
and -shm files beside it, which take its mode) is created readable by its owner only: it
holds copies of the documents runs changed or deleted. The operations are kept compactly
(`opstable`, `journal`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import socket
import sqlite3
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fsmigrate import __version__
from fsmigrate.errors import (
    FsMigrateWarning,
    RunNotFound,
    StateCorrupt,
    StateNotFound,
    StateSchemaTooNew,
)
from fsmigrate.state.journals import Journals
from fsmigrate.state.operations import COMPACT, Operations
from fsmigrate.state.schema import SCHEMA, SCHEMA_VERSION
from fsmigrate.times import now_text, rfc3339

BUSY_TIMEOUT = 30.0  # seconds a reader or writer waits for another one's transaction


# Steps that bring a state file of an older schema to the next version (index = from).
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN plan_digest TEXT",),
    # 3: the traffic limits and throttling of a run, a dry-run's estimate, the archive
    # policy, when its archive was pruned; and `prune` runs (a new kind: the table is
    # rebuilt, SQLite cannot change a CHECK constraint in place)
    2: ("@rebuild runs",),
    # 4: the compact archive: runs get an integer key (`ops` and `blocks` refer to it) and
    # `pruned_by`; operations move to the compact layout (`opstable`), then the file is
    # vacuumed once
    3: ("@rebuild runs", "@compact ops"),
    # 5: the read time a run planned at (its snapshot)
    # (a column an earlier step's rebuild already made is not added twice)
    4: ("@column runs read_time TEXT",),
    # 6: a run stopped on purpose (`fsmigrate control stop`, --max-skip-ratio) is `stopped`
    # (a new status: the table is rebuilt), and the control events of runs are kept
    5: ("@rebuild runs", "@create controls"),
    # 7: where each Beam apply's journal is, and which of its batch files are recorded
    6: ("@create journals", "@create journal_batches"),
}
# How a read-only reader of an older file sees the current shape (temporary views shadow
# the file's tables on that connection only; the file is not changed).
# Their operations are read in the old layout (`opstable`).
_READ_SHIMS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TEMP VIEW runs AS SELECT rowid AS key, *, NULL AS plan_digest, NULL AS traffic,"
        " NULL AS estimate, NULL AS archive_policy, NULL AS pruned_at, NULL AS pruned_by,"
        " NULL AS read_time FROM main.runs",
    ),
    2: (
        "CREATE TEMP VIEW runs AS SELECT rowid AS key, *, NULL AS traffic, NULL AS estimate,"
        " NULL AS archive_policy, NULL AS pruned_at, NULL AS pruned_by, NULL AS read_time"
        " FROM main.runs",
    ),
    3: (
        "CREATE TEMP VIEW runs AS SELECT rowid AS key, *, NULL AS pruned_by,"
        " NULL AS read_time FROM main.runs",
    ),
    4: ("CREATE TEMP VIEW runs AS SELECT *, NULL AS read_time FROM main.runs",),
}
# Files older than schema 6 have no control events: an empty `controls` for their readers.
_NO_CONTROLS = (
    "CREATE TEMP VIEW controls AS SELECT NULL AS run_id, NULL AS seq, NULL AS action,"
    " NULL AS value, NULL AS operator, NULL AS host, NULL AS sent_at, NULL AS seen_at WHERE 0"
)
# Files older than schema 7 have no journals recorded: empty tables for their readers.
_NO_JOURNALS = (
    "CREATE TEMP VIEW journals AS SELECT NULL AS run_id, NULL AS location, 0 AS keep,"
    " NULL AS state, NULL AS recorded_at, NULL AS imported_at, NULL AS imported_by,"
    " 0 AS batches, 0 AS operations WHERE 0",
    "CREATE TEMP VIEW journal_batches AS SELECT NULL AS run_id, NULL AS name, 0 AS base,"
    " 0 AS size, 0 AS settled WHERE 0",
)


def new_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def operator_name() -> str:
    name = os.environ.get("FSMIGRATE_OPERATOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return f"uid-{os.getuid()}"


PROBLEM_NOTES = ("CONFLICT", "REFUSED")  # how a note that reports a problem starts
PENDING_NOTES = 1_000  # notes kept for the next transaction at most, then written


def is_problem(note: str) -> bool:
    """A conflict or a refusal: the notes that lead a report."""
    return note.startswith(PROBLEM_NOTES)


@dataclass
class OpRecord:
    """One row of the audit, as the runner writes it (`precondition`: a plan.Precondition
    or its JSON; `after` need not be given when there is a write: it is rendered from it;
    `commit_time`: when a `committed` row landed, for a batch recorded with its outcome)."""

    seq: int
    kind: str
    path: str
    precondition: Optional[Any]
    before: Optional[bytes]
    after: Optional[str]
    status: str
    reason: Optional[str] = None
    write: Optional[bytes] = None
    group: Optional[int] = None
    label: Optional[str] = None
    commit_time: Optional[str] = None


class State(Operations, Journals):
    def __init__(self, conn: sqlite3.Connection, path: Path, layout: int = SCHEMA_VERSION) -> None:
        self.conn = conn
        self.path = path
        self.pending_notes: list[tuple[str, int, str]] = []  # add_note(..., later=True)
        self.init_operations(layout)

    # ---- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> State:
        """Open for writing, creating the file and its tables if needed."""
        if path.exists() and not path.is_file():
            raise StateCorrupt(path, "it is not a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        created = _create_private(path)
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT, isolation_level=None)
            conn.row_factory = sqlite3.Row
            state = cls(conn, path)
            state._check()  # before anything changes the file
            if state._schema_version() > SCHEMA_VERSION:
                raise StateSchemaTooNew(path, state._schema_version(), SCHEMA_VERSION)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            state._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(path, str(exc)) from exc
        if not created:
            warn_if_exposed(path)
        return state

    @classmethod
    def open_readonly(cls, path: Path) -> Optional[State]:
        """Open an existing file read-only; None when it does not exist (never creates it)."""
        if not path.exists():
            return None
        if not path.is_file():
            raise StateCorrupt(path, "it is not a file")
        try:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
            )
            conn.row_factory = sqlite3.Row
            state = cls(conn, path)
            state._check()
            version = state._schema_version()
            state.layout = version
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(path, str(exc)) from exc
        if version > SCHEMA_VERSION:
            raise StateSchemaTooNew(path, version, SCHEMA_VERSION)
        if version == 0:
            raise StateCorrupt(path, "it is an SQLite file but not an fsmigrate state file")
        for stmt in _READ_SHIMS.get(version, ()):
            conn.execute(stmt)
        if version < 6:
            conn.execute(_NO_CONTROLS)
        if version < 7:
            for stmt in _NO_JOURNALS:
                conn.execute(stmt)
        warn_if_exposed(path)
        return state

    def _check(self) -> None:
        """Fail early on a file that is not SQLite or not ours (damage found later in the
        file surfaces as sqlite3.DatabaseError, which the CLI reports in one line)."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        if tables and "meta" not in tables:
            raise sqlite3.DatabaseError("it is an SQLite file but not an fsmigrate state file")

    @classmethod
    def require(cls, path: Path) -> State:
        state = cls.open_readonly(path)
        if state is None:
            raise StateNotFound(path)
        return state

    def close(self) -> None:
        self.conn.close()

    def _schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        """Create the tables of a new file, or bring an older schema up to date, in one
        transaction (a file of a newer schema is refused before this)."""
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise StateSchemaTooNew(self.path, version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        self.conn.execute("PRAGMA foreign_keys=OFF")  # no effect inside a transaction
        try:
            self._migrate_from(version)
        finally:
            self.conn.execute("PRAGMA foreign_keys=ON")
        if 0 < version < COMPACT:  # the old layout's pages are free now: give them back
            self.conn.execute("VACUUM")

    def _migrate_from(self, version: int) -> None:
        with self.tx():
            if version == 0:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
            else:
                for step in range(version, SCHEMA_VERSION):
                    for stmt in _UPGRADES[step]:
                        if stmt.startswith("@rebuild "):
                            self._rebuild(stmt.split()[1])
                        elif stmt.startswith("@column "):
                            _, table, column, kind = stmt.split()
                            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                            if column not in have:
                                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                        elif stmt == "@compact ops":
                            self.compact_operations()
                        elif stmt.startswith("@create "):
                            self._create(stmt.split()[1])
                        else:
                            self.conn.execute(stmt)
            broken = self.conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.DatabaseError(
                    f"the schema upgrade would break {len(broken)} references between tables"
                )
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _rebuild(self, table: str) -> None:
        """Recreate `table` as the current schema declares it, keeping its rows (columns
        it lacked are NULL or their default). Runs inside the migration's transaction,
        with foreign keys off (the rows keep their keys; checked before the commit)."""
        ddl = next(
            stmt for stmt in SCHEMA.split(";") if f"CREATE TABLE IF NOT EXISTS {table} (" in stmt
        )
        old_cols = [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]
        self.conn.execute(ddl.replace(f"IF NOT EXISTS {table} (", f"{table}_new ("))
        new_cols = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table}_new)")}
        cols = ", ".join(c for c in old_cols if c in new_cols)
        self.conn.execute(f"INSERT INTO {table}_new ({cols}) SELECT {cols} FROM {table}")
        self.conn.execute(f"DROP TABLE {table}")
        self.conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        for stmt in SCHEMA.split(";"):
            if "INDEX IF NOT EXISTS" in stmt and f" ON {table} (" in stmt:
                self.conn.execute(stmt)

    def _create(self, table: str) -> None:
        """Create `table` as the current schema declares it (a table new in this version)."""
        ddl = next(
            stmt for stmt in SCHEMA.split(";") if f"CREATE TABLE IF NOT EXISTS {table} (" in stmt
        )
        self.conn.execute(ddl)

    def tx(self) -> _Tx:
        """A write transaction; it writes the notes kept for later first."""
        return _Tx(self.conn, self.pending_notes)

    # ---- runs ----------------------------------------------------------------------

    def start_run(
        self,
        *,
        invocation: str,
        project: str,
        database: str,
        revision: str,
        checksum: str,
        description: str,
        mode: str,
        kind: str = "upgrade",
        resumes: Optional[str] = None,
        source: Optional[str] = None,
        plan_digest: Optional[str] = None,
        read_time: Optional[str] = None,
    ) -> str:
        """Record a new run. `read_time`: the instant its plan reads the database at (RFC
        3339), for a run that plans; None for one that does not read (a reviewed plan's
        apply records its plan's)."""
        run_id = new_id()
        with self.tx():
            self.conn.execute(
                "INSERT INTO runs (id, invocation, project, database, revision, checksum,"
                " description, kind, mode, status, resumes, source, plan_digest, started_at,"
                " operator, host, tool_version, read_time)"
                " VALUES (?,?,?,?,?,?,?,?,?, 'running', ?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    invocation,
                    project,
                    database,
                    revision,
                    checksum,
                    description,
                    kind,
                    mode,
                    resumes,
                    source,
                    plan_digest,
                    now_text(),
                    operator_name(),
                    socket.gethostname(),
                    __version__,
                    read_time,
                ),
            )
        return run_id

    def set_archive_policy(self, run_id: str, policy: str) -> None:
        """Record what the run keeps of the documents it changes (`archive.Policy.name`)."""
        with self.tx():
            self.conn.execute("UPDATE runs SET archive_policy=? WHERE id=?", (policy, run_id))

    def set_plan_digest(self, run_ids: Sequence[str], digest: str) -> None:
        """Record the digest of the plan file the dry-runs `run_ids` wrote."""
        with self.tx():
            self.conn.executemany(
                "UPDATE runs SET plan_digest=? WHERE id=?", [(digest, r) for r in run_ids]
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        counts: dict[str, int],
        error: Optional[str] = None,
        error_kind: Optional[str] = None,
    ) -> None:
        with self.tx():
            self.update_totals(run_id)
            self.conn.execute(
                "UPDATE runs SET status=?, finished_at=?, counts=?, error=?, error_kind=?"
                " WHERE id=?",
                (status, now_text(), json.dumps(counts, sort_keys=True), error, error_kind, run_id),
            )

    def record_retries(self, run_id: str, retries: int, last_error: Optional[str]) -> None:
        with self.tx():
            self.conn.execute(
                "UPDATE runs SET retries=?, last_retry_error=? WHERE id=?",
                (retries, last_error, run_id),
            )

    def record_usage(
        self, run_id: str, *, traffic: Optional[dict[str, Any]], estimate: Optional[dict[str, Any]]
    ) -> None:
        """The run's traffic (limits used, throttling) and its estimate (a dry-run) or
        actuals (an apply), as JSON (`usage` reads them back)."""
        with self.tx():
            self.conn.execute(
                "UPDATE runs SET traffic=?, estimate=? WHERE id=?",
                (
                    json.dumps(traffic, sort_keys=True) if traffic else None,
                    json.dumps(estimate, sort_keys=True) if estimate else None,
                    run_id,
                ),
            )

    @staticmethod
    def usage(row: sqlite3.Row) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]:
        """(traffic, estimate) of a run row, parsed."""
        return (
            json.loads(row["traffic"]) if row["traffic"] else None,
            json.loads(row["estimate"]) if row["estimate"] else None,
        )

    def mark_interrupted(self, run_id: str, by: str) -> None:
        """A run found `running` while we hold the lock: its process died."""
        with self.tx():
            self.update_totals(run_id)
            self.conn.execute(
                "UPDATE runs SET status='interrupted', error_kind='interrupted', error=?"
                " WHERE id=? AND status='running'",
                (f"the process stopped before the run finished; resumed by run {by}", run_id),
            )

    def record_control(
        self,
        run_id: str,
        *,
        seq: int,
        action: str,
        value: Optional[str],
        operator: str,
        host: str,
        sent_at: str,
    ) -> bool:
        """A control event (pause, resume, rate, stop) as the run saw it; False when the
        run had recorded it already."""
        with self.tx():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO controls (run_id, seq, action, value, operator, host,"
                " sent_at, seen_at) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, seq, action, value, operator, host, sent_at, now_text()),
            )
        return cur.rowcount > 0

    def controls(self, run_id: str) -> list[dict[str, Any]]:
        """The control events a run saw, in order (who sent them, when, and when seen)."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT seq, action, value, operator, host, sent_at, seen_at FROM controls"
                " WHERE run_id=? ORDER BY seq",
                (run_id,),
            )
        ]

    def last_apply(self, project: str, database: str, revision: str) -> Optional[sqlite3.Row]:
        """The newest apply run of `revision` on the target (upgrade, rerun or resolve)."""
        return self.conn.execute(
            "SELECT * FROM runs WHERE project=? AND database=? AND revision=? AND mode='apply'"
            " AND kind IN ('upgrade', 'rerun', 'plan', 'resolve', 'stamp', 'elsewhere')"
            " ORDER BY started_at DESC, rowid DESC"
            " LIMIT 1",
            (project, database, revision),
        ).fetchone()

    def resume_chain(self, run_id: str) -> list[str]:
        """`run_id` and every run it resumes, transitively (newest first)."""
        chain = []
        current: Optional[str] = run_id
        while current and current not in chain:
            chain.append(current)
            row = self.conn.execute("SELECT resumes FROM runs WHERE id=?", (current,)).fetchone()
            current = row["resumes"] if row else None
        return chain

    def committed_among_runs(self, run_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(path, kind) of every operation that committed in `run_ids`."""
        if not run_ids:
            return set()
        runs = ",".join("?" * len(run_ids))
        return {
            (r["path"], r["kind"])
            for r in self.conn.execute(
                f"SELECT path, kind FROM ops WHERE run IN (SELECT key FROM runs WHERE id IN "
                f"({runs})) AND status='committed'",
                list(run_ids),
            )
        }

    def mark_applied(
        self, *, project: str, database: str, revision: str, checksum: str, run_id: str
    ) -> None:
        with self.tx():
            self.conn.execute(
                "INSERT INTO applied (project, database, revision, checksum, applied_at, run_id)"
                " VALUES (?,?,?,?,?,?)",
                (project, database, revision, checksum, now_text(), run_id),
            )

    def record_new_version(
        self, *, project: str, database: str, revision: str, checksum: str, run_id: str
    ) -> None:
        """A repeatable revision applied again from an edited script: its checksum now."""
        with self.tx():
            self.conn.execute(
                "UPDATE applied SET checksum=?, applied_at=?, run_id=? WHERE project=? AND"
                " database=? AND revision=?",
                (checksum, now_text(), run_id, project, database, revision),
            )

    def record_by_hand(
        self, *, project: str, database: str, script: Any, reason: str, invocation: str, kind: str
    ) -> str:
        """Record `script` as applied without running it: a run of kind `resolve` (after a
        failed run) or `stamp` (a database changed by hand), with the reason."""
        run_id = self.start_run(
            invocation=invocation,
            project=project,
            database=database,
            revision=script.revision,
            checksum=script.checksum,
            description=script.description,
            mode="apply",
            kind=kind,
        )
        verb = "resolved" if kind == "resolve" else "stamped"
        self.add_note(run_id, 0, f"{verb} without running: {reason}")
        self.finish_run(run_id, status="succeeded", counts={})
        self.mark_applied(
            project=project,
            database=database,
            revision=script.revision,
            checksum=script.checksum,
            run_id=run_id,
        )
        return run_id

    def adopt_marker(self, *, project: str, database: str, marker: dict[str, Any]) -> str:
        """Record a revision the database's marker says is applied. When the marker names
        one of our own runs (interrupted after writing it), that run is completed;
        otherwise a run of kind `elsewhere` carries the marker's details."""
        revision, checksum = marker["revision"], marker["checksum"]
        own = self.conn.execute("SELECT * FROM runs WHERE id=?", (marker.get("run_id"),)).fetchone()
        if own is not None and own["revision"] == revision:
            if own["status"] != "succeeded":
                self.add_note(
                    own["id"],
                    self.note_count(own["id"]),
                    "completed later: its marker was found in the database",
                )
                self.finish_run(
                    own["id"], status="succeeded", counts=json.loads(own["counts"] or "{}")
                )
            run_id = own["id"]
        else:
            run_id = new_id()
            applied_at = marker.get("applied_at")
            when = rfc3339(applied_at) if isinstance(applied_at, dt.datetime) else now_text()
            with self.tx():
                self.conn.execute(
                    "INSERT INTO runs (id, invocation, project, database, revision, checksum,"
                    " description, kind, mode, status, source, started_at, finished_at,"
                    " operator, host, tool_version, counts)"
                    " VALUES (?,?,?,?,?,?,?, 'elsewhere', 'apply', 'succeeded', ?,?,?,?,?,?,?)",
                    (
                        run_id,
                        run_id,
                        project,
                        database,
                        revision,
                        checksum,
                        marker.get("description") or "",
                        marker.get("run_id"),
                        when,
                        when,
                        marker.get("operator") or "?",
                        marker.get("host") or "?",
                        marker.get("tool_version") or "?",
                        json.dumps(marker.get("counts") or {}, sort_keys=True, default=str),
                    ),
                )
            self.add_note(
                run_id,
                0,
                f"applied elsewhere: run {marker.get('run_id')} by "
                f"{marker.get('operator')}@{marker.get('host')} "
                f"({marker.get('kind')})",
            )
        self.mark_applied(
            project=project, database=database, revision=revision, checksum=checksum, run_id=run_id
        )
        return run_id

    def applied(self, project: str, database: str) -> dict[str, sqlite3.Row]:
        rows = self.conn.execute(
            "SELECT applied.*, runs.description FROM applied"
            " LEFT JOIN runs ON runs.id = applied.run_id"
            " WHERE applied.project=? AND applied.database=? ORDER BY applied.revision",
            (project, database),
        )
        return {row["revision"]: row for row in rows}

    def applied_anywhere(self) -> list[sqlite3.Row]:
        """Every applied revision of every target this file knows (project, database,
        revision, checksum)."""
        return list(
            self.conn.execute(
                "SELECT project, database, revision, checksum FROM applied"
                " ORDER BY project, database, revision"
            )
        )

    def runs(
        self,
        project: Optional[str] = None,
        database: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> list[sqlite3.Row]:
        sql = "SELECT * FROM runs"
        args: list[Any] = []
        if project is not None:
            sql += " WHERE project=? AND database=?"
            args += [project, database]
        sql += " ORDER BY started_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return list(self.conn.execute(sql, args))

    def runs_of(self, invocation: str) -> list[str]:
        """Ids of the runs one command started, in the order they ran."""
        return [
            r["id"]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE invocation=? ORDER BY started_at, rowid", (invocation,)
            )
        ]

    def run(self, run_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return row

    # ---- notes -------------------------------------------------------------------

    def add_note(self, run_id: str, seq: int, text: str, *, later: bool = False) -> None:
        """Keep a note of a run. `later`: in the next write transaction (a run's notes go
        with its next journaled batch, or its end: one commit instead of one per note; a
        crash loses only the notes of what it had not journaled yet, which the resumed
        run plans, and notes, again). At most PENDING_NOTES are kept: a stretch with no
        transaction (Beam's coordinator taking its workers' notes) writes them as they
        come, in transactions of that many."""
        self.pending_notes.append((run_id, seq, text))
        if not later or len(self.pending_notes) >= PENDING_NOTES:
            self.write_notes()

    def write_notes(self) -> None:
        """Write the notes kept for later now (a transaction writes them first)."""
        if self.pending_notes:
            with self.tx():
                pass

    def notes(self, run_id: str) -> list[str]:
        return list(self.iter_notes(run_id))

    def iter_notes(self, run_id: str, *, problems: Optional[bool] = None) -> Iterator[str]:
        """A run's notes in order, read as they are used: a run over a million documents
        can have tens of thousands (one per processor in 0001). `problems`: only the
        conflicts and refusals (True), or only the others (False)."""
        self.write_notes()
        for r in self.conn.execute("SELECT text FROM notes WHERE run_id=? ORDER BY seq", (run_id,)):
            if problems is None or is_problem(r[0]) == problems:
                yield r[0]

    def note_count(self, run_id: str) -> int:
        self.write_notes()
        (count,) = self.conn.execute(
            "SELECT COUNT(*) FROM notes WHERE run_id=?", (run_id,)
        ).fetchone()
        return int(count)


def _create_private(path: Path) -> bool:
    """Create an empty state file readable by its owner only (SQLite gives the -wal and
    -shm files the database file's mode); False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def warn_if_exposed(path: Path) -> None:
    """Warn (never chmod: the owner may share it on purpose) when the state file or its
    -wal file (the -shm file holds no content) can be read by others than their owner."""
    exposed = []
    for file in (path, Path(f"{path}-wal")):
        try:
            mode = file.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            exposed.append(f"{file} ({mode:o})")
    if exposed:
        warnings.warn(
            FsMigrateWarning(
                f"state file readable by others: {', '.join(exposed)}; it holds copies of the "
                f"documents runs changed or deleted: `chmod 600 {path}*`"
            ),
            stacklevel=3,
        )


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection); the notes
    kept for later are written first, and forgotten once committed."""

    def __init__(self, conn: sqlite3.Connection, notes: list[tuple[str, int, str]]) -> None:
        self.conn = conn
        self.notes = notes
        self.written = 0

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        if self.notes:
            self.written = len(self.notes)
            self.conn.executemany(
                "INSERT INTO notes (run_id, seq, text) VALUES (?,?,?)", self.notes
            )
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        if not exc_type:
            del self.notes[: self.written]
