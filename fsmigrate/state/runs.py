"""A recorded run as the state file holds it: `RunResult`, and its JSON form (`run_dict`,
the documented keys of every command's `--format json`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, overload

from fsmigrate.state.database import BUSY_TIMEOUT, State


def run_dict(state: Any, row: sqlite3.Row, *, notes: bool = True) -> dict[str, Any]:
    """A run as a JSON-able dict (stable keys; documented in the README). `notes=False`:
    without its notes, for a caller that streams them."""
    found = {
        "run_id": row["id"],
        "invocation": row["invocation"],
        "project": row["project"],
        "database": row["database"],
        "revision": row["revision"],
        "description": row["description"],
        "checksum": row["checksum"],
        "kind": row["kind"],
        "mode": row["mode"],
        "status": row["status"],
        "resumes": row["resumes"],
        "retries": row["retries"],
        "last_retry_error": row["last_retry_error"],
        "error_kind": row["error_kind"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "operator": row["operator"],
        "host": row["host"],
        "tool_version": row["tool_version"],
        "planned": row["planned"],
        "committed": row["committed"],
        "skipped": row["skipped"],
        "failed": row["failed"],
        "batches": row["batches"],
        "counts": json.loads(row["counts"] or "{}"),
        "error": row["error"],
        "source": row["source"],
        "plan_digest": row["plan_digest"],
        "archive_policy": row["archive_policy"],
        "pruned_at": row["pruned_at"],
        "pruned_by": row["pruned_by"],
        "read_time": row["read_time"],
        "notes": None,
        "controls": state.controls(row["id"]),
        **usage_dict(state, row),
    }
    if notes:
        found["notes"] = state.notes(row["id"])
    else:
        del found["notes"]
    return found


def usage_dict(state: Any, row: sqlite3.Row) -> dict[str, Any]:
    """traffic (limits, throttling), and the figures of estimate.py: a dry-run's estimate,
    an apply's actuals."""
    traffic, figures = state.usage(row)
    dry = row["mode"] == "dry-run"
    return {
        "traffic": traffic,
        "estimate": figures if dry else None,
        "actual": None if dry else figures,
    }


class Notes(Sequence[str]):
    """A run's notes, read from its state file when they are used, not held: a run over a
    million documents can have tens of thousands (0001: one per processor), and a result
    that held them would grow with the collection. Compares equal to a list of the same
    notes; `list(notes)` takes them all."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path).resolve()  # now: the caller may change directory before use
        self.run_id = run_id

    def _read(self, sql: str, *args: Any) -> Iterator[Any]:
        """The rows of one query, on a read-only connection of their own (the run's may
        be closed by now)."""
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            yield from conn.execute(sql, (self.run_id, *args))
        finally:
            conn.close()

    def __len__(self) -> int:
        return int(next(self._read("SELECT COUNT(*) FROM notes WHERE run_id=?"))[0])

    def __iter__(self) -> Iterator[str]:
        for row in self._read("SELECT text FROM notes WHERE run_id=? ORDER BY seq"):
            yield row[0]

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[str, list[str]]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        found = list(
            self._read("SELECT text FROM notes WHERE run_id=? ORDER BY seq LIMIT 1 OFFSET ?", index)
        )
        if index < 0 or not found:
            raise IndexError("note index out of range")
        return str(found[0][0])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Notes, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return f"<notes of run {self.run_id} in {self.path}>"


@dataclass
class RunResult:
    """One recorded run (an upgrade, rerun, plan apply, restore, stamp...), as the state
    file holds it. `to_json()` is the documented JSON form.

    Attributes:
        run_id: The run's id.
        invocation: The id shared by the runs of one command.
        project: The project.
        database: The database.
        revision: The migration's revision.
        description: The first line of its docstring.
        checksum: The script's checksum.
        kind: `upgrade`, `rerun`, `plan`, `restore`, `stamp`, `resolve` or `prune`.
        mode: `apply` or `dry-run`.
        status: `succeeded`, `failed`, `interrupted`, `stopped` or `running`.
        planned: Operations planned.
        committed: Operations committed.
        skipped: Operations skipped: their document changed after it was planned.
        failed: Operations that failed.
        batches: Batches committed.
        counts: Operations planned, by kind.
        notes: The migration's notes, read from the state file when used.
        started_at: When it started.
        finished_at: When it finished, or None.
        operator: Who ran it.
        host: Where.
        tool_version: fsmigrate's version.
        resumes: The run it went on from, if any.
        retries: Calls retried.
        last_retry_error: The last error retried.
        error: What ended it, when it did not succeed.
        error_kind: The kind of that error, e.g. `stopped`.
        source: Where its operations came from: a plan file, a run restored.
        plan_digest: The sha256 of the plan file it wrote or applied.
        archive_policy: What its archive keeps: `full`, `paths`, `redact:...`.
        pruned_at: When its archive was pruned, if it was.
        pruned_by: The prune's run.
        read_time: The instant its plan read the database.
        traffic: The traffic limits used, and what throttling did.
        estimate: A dry-run's estimate of the apply.
        actual: An apply's figures.
        controls: The control events it took.
    """

    run_id: str
    invocation: str
    project: str
    database: str
    revision: str
    description: str
    checksum: str
    kind: str
    mode: str
    status: str
    planned: int
    committed: int
    skipped: int
    failed: int
    batches: int
    counts: dict[str, int]
    notes: Sequence[str]  # `Notes` (read from the state file when used) or a list
    started_at: str
    finished_at: Optional[str]
    operator: str
    host: str
    tool_version: str
    resumes: Optional[str] = None
    retries: int = 0
    last_retry_error: Optional[str] = None
    error: Optional[str] = None
    error_kind: Optional[str] = None
    source: Optional[str] = None
    plan_digest: Optional[str] = None
    archive_policy: Optional[str] = None  # full / paths / redact:<function>
    pruned_at: Optional[str] = None  # when its archive was pruned, and by which run
    pruned_by: Optional[str] = None
    read_time: Optional[str] = None  # the snapshot its plan read (RFC 3339), if it read
    traffic: Optional[dict[str, Any]] = None  # limits used, throttling events
    estimate: Optional[dict[str, Any]] = None  # a dry-run's: reads, writes, deletes, ...
    actual: Optional[dict[str, Any]] = None  # an apply's: the same figures, as done
    # the live control events the run took (pause, resume, rate, stop): who, when, seen
    controls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, state: State, row: sqlite3.Row) -> RunResult:
        state.write_notes()
        return cls(**run_dict(state, row, notes=False), notes=Notes(state.path, row["id"]))

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "notes": list(self.notes)}
