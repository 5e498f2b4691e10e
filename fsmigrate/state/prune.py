"""Retention: drop the before-images and journaled writes of old runs from the state file.

A prune keeps every run, its counts, checksums, notes, and each operation's path, kind,
precondition (update time), status and outcome; it drops the compressed blocks that hold
the documents' copies, the writes and so the after-images. It is itself a run (kind
`prune`) whose notes name each run it pruned; each pruned run records when and by which
run (`pruned_at`, `pruned_by`). The values are really gone: the blocks are deleted with
`secure_delete` on (their pages are overwritten with zeros), the WAL is checkpointed and
truncated, and the file is rebuilt with VACUUM, which also gives the space back.

A run whose journal is still needed is kept: one with operations `pending` (an apply that
died mid-batch: the next upgrade settles them from the journaled writes), or one still
running. A dry-run that wrote a plan file can be pruned: `apply` reads the plan file, not
the state file (prune never touches plan files or exports: delete those yourself).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fsmigrate.errors import StateBusy
from fsmigrate.state import compact
from fsmigrate.state.database import State, new_id
from fsmigrate.times import now_text, rfc3339
from fsmigrate.words import plural


@dataclass(frozen=True)
class Pruned:
    run_id: str
    revision: str
    kind: str
    mode: str
    finished_at: str
    before_images: int
    writes: int
    bytes: int  # compressed bytes of the blocks dropped


@dataclass(frozen=True)
class Kept:
    run_id: str
    why: str


@dataclass
class Plan:
    """What a prune of runs finished before `cutoff` would do."""

    cutoff: dt.datetime
    prune: list[Any] = field(default_factory=list)  # run rows
    kept: list[Kept] = field(default_factory=list)


def plan(state: State, project: str, database: str, cutoff: dt.datetime) -> Plan:
    """The target's runs finished before `cutoff` that still hold archive data, and the
    ones among them that must be kept (with why)."""
    out = Plan(cutoff)
    rows = state.conn.execute(
        "SELECT * FROM runs WHERE project=? AND database=? AND pruned_at IS NULL"
        " AND started_at < ? AND EXISTS (SELECT 1 FROM blocks WHERE blocks.run=runs.key)"
        " ORDER BY started_at, key",
        (project, database, _text(cutoff)),
    ).fetchall()
    for row in rows:
        if row["status"] == "running" or row["finished_at"] is None:
            out.kept.append(
                Kept(
                    row["id"],
                    "it is still running, or died unfinished: the next "
                    "`fsmigrate upgrade` settles it",
                )
            )
        elif row["finished_at"] >= _text(cutoff):
            continue
        elif state.conn.execute(
            "SELECT 1 FROM ops WHERE run=? AND status='pending' LIMIT 1", (row["key"],)
        ).fetchone():
            out.kept.append(
                Kept(
                    row["id"],
                    "it has operations pending (an apply stopped "
                    "mid-batch): the next `fsmigrate upgrade` settles "
                    "them from its journal",
                )
            )
        else:
            out.prune.append(row)
    return out


@dataclass
class PruneResult:
    """What a prune did (or, with `dry_run`, would do). `run_id` is the prune's own run
    (None when nothing was pruned); sizes are of the state file with its -wal and -shm.

    Attributes:
        cutoff: Runs finished before this were pruned.
        dry_run: Whether nothing was changed.
        run_id: The prune's own run; None when nothing was pruned.
        pruned: The runs pruned.
        kept: The runs kept, and why.
        bytes_before: The state file's size before.
        bytes_after: Its size after.
        warnings: What should be seen, e.g. a write-ahead log another reader kept.
    """

    cutoff: str
    dry_run: bool
    run_id: Optional[str]
    pruned: list[Pruned]
    kept: list[Kept]
    bytes_before: int
    bytes_after: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "pruned": [p.__dict__ for p in self.pruned],
            "kept": [k.__dict__ for k in self.kept],
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "warnings": self.warnings,
        }


def prune(
    state: State, project: str, database: str, cutoff: dt.datetime, *, dry_run: bool, confirm: Any
) -> PruneResult:
    """Prune the target's runs finished before `cutoff` (see the module); `confirm(prompt)`
    is asked before anything is dropped and raises when declined."""
    planned = plan(state, project, database, cutoff)
    size = file_bytes(state.path)
    listed = [_count(state, row) for row in planned.prune]
    result = PruneResult(_text(cutoff), dry_run, None, listed, planned.kept, size, size)
    if dry_run or not planned.prune:
        return result
    running = running_applies(state)
    if running:
        row = running[0]
        raise StateBusy(
            f"run {row['id']} ({row['kind']} apply of {row['revision']} on "
            f"{row['project']}/{row['database']}, started {row['started_at']} by "
            f"{row['operator']}@{row['host']}) is running, or died unfinished: a "
            "prune rewrites the whole file and would hold its journal back; wait "
            "for it, or let `fsmigrate upgrade` settle it first"
        )
    confirm(
        f"Prune the archive of {plural(len(listed), 'run')} finished before {_text(cutoff)} from "
        f"{state.path} ({sum(p.before_images for p in listed):,} before-images, "
        f"{sum(p.writes for p in listed):,} writes)? They cannot be restored afterwards."
    )
    result.run_id, result.pruned, result.warnings = execute(
        state, planned, invocation=new_id(), project=project, database=database
    )
    result.bytes_after = file_bytes(state.path)
    return result


def running_applies(state: State) -> list[Any]:
    """Applies of any target of the file that are running (or died without finishing):
    VACUUM would hold their journal writes back while it rebuilds the file."""
    return state.conn.execute(
        "SELECT * FROM runs WHERE mode='apply' AND status='running' ORDER BY started_at"
    ).fetchall()


def execute(
    state: State, planned: Plan, *, invocation: str, project: str, database: str
) -> tuple[str, list[Pruned], list[str]]:
    """Prune the planned runs; (the prune run's id, what was pruned, warnings)."""
    conn = state.conn
    run_id = state.start_run(
        invocation=invocation,
        project=project,
        database=database,
        revision="-",
        checksum="-",
        kind="prune",
        mode="apply",
        description=f"prune the archive of runs finished before {_text(planned.cutoff)}",
    )
    done: list[Pruned] = []
    conn.execute("PRAGMA secure_delete=ON")
    try:
        with state.tx():
            for row in planned.prune:
                done.append(_drop(state, row, run_id))
        for i, item in enumerate(done):
            state.add_note(
                run_id,
                i,
                f"pruned run {item.run_id} ({item.kind} {item.mode} of "
                f"{item.revision}, finished {item.finished_at}): "
                f"{item.before_images} before-images, {item.writes} "
                f"writes, {item.bytes:,} bytes",
            )
        for j, kept in enumerate(planned.kept, len(done)):
            state.add_note(run_id, j, f"kept run {kept.run_id}: {kept.why}")
        state.finish_run(
            run_id,
            status="succeeded",
            counts={
                "runs": len(done),
                "before_images": sum(p.before_images for p in done),
                "writes": sum(p.writes for p in done),
            },
        )
    except BaseException as exc:
        state.finish_run(
            run_id,
            status="failed",
            counts={},
            error=f"{type(exc).__name__}: {exc}",
            error_kind="error",
        )
        raise
    return run_id, done, _reclaim(state)


def _count(state: State, row: Any) -> Pruned:
    """What pruning a run drops."""
    images = writes = size = 0
    for (data,) in state.conn.execute("SELECT data FROM blocks WHERE run=?", (row["key"],)):
        found_images, found_writes = compact.entry_count(data)
        images += found_images
        writes += found_writes
        size += len(data)
    return Pruned(
        row["id"],
        row["revision"],
        row["kind"],
        row["mode"],
        row["finished_at"],
        images,
        writes,
        size,
    )


def _drop(state: State, row: Any, by: str) -> Pruned:
    dropped = _count(state, row)
    state.conn.execute("DELETE FROM blocks WHERE run=?", (row["key"],))
    state.conn.execute(
        "UPDATE runs SET pruned_at=?, pruned_by=? WHERE key=?", (now_text(), by, row["key"])
    )
    return dropped


def _reclaim(state: State) -> list[str]:
    """Fold the WAL into the file, rebuild the file without the freed pages, and empty the
    WAL, so the dropped values are in neither; warnings when a reader prevents it."""
    conn = state.conn
    warnings = []
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    wal = Path(f"{state.path}-wal")
    if busy or (wal.exists() and wal.stat().st_size):
        warnings.append(
            f"another process is reading {state.path}: its WAL ({wal}) could not "
            "be emptied, and holds pruned values until the next checkpoint (run "
            "`fsmigrate prune` again when nothing else uses the file)"
        )
    return warnings


def file_bytes(path: Path) -> int:
    """The state file with its -wal and -shm files."""
    return sum(
        os.path.getsize(p)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if os.path.exists(p)
    )


def _text(when: dt.datetime) -> str:
    return rfc3339(when, "microseconds")


def parse_before(text: str, now: Optional[dt.datetime] = None) -> dt.datetime:
    """`--before`: an age ('90d', '12h', '0d' for now) or a date/time ('2026-01-01', UTC
    when no zone)."""
    from fsmigrate.times import parse_instant

    try:
        return parse_instant(text, now or dt.datetime.now(dt.timezone.utc))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age like 90d, 12h or 0d nor a date like 2026-01-31"
        ) from None
