"""A recorded run as the state file holds it: `RunResult`, and its JSON form (`run_dict`,
the documented keys of every command's `--format json`)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Optional

from fsmigrate.state.database import State


def run_dict(state: Any, row: sqlite3.Row) -> dict[str, Any]:
    """A run as a JSON-able dict (stable keys; documented in the README)."""
    return {
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
        "notes": state.notes(row["id"]),
        "controls": state.controls(row["id"]),
        **usage_dict(state, row),
    }


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


@dataclass
class RunResult:
    """One recorded run (an upgrade, rerun, plan apply, restore, stamp...), as the state
    file holds it. `to_json()` is the documented JSON form."""

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
    notes: list[str]
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
        return cls(**run_dict(state, row))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
