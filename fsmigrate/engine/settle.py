"""Settling operations whose outcome is unknown (a crash, a dead worker, a lost reply) by
re-reading their documents: landed, never sent, or changed since the plan."""

from __future__ import annotations

from typing import Any

from fsmigrate.engine import reconcile
from fsmigrate.engine.batching import chunks
from fsmigrate.errors import ReconcileError
from fsmigrate.firestore.store import Store
from fsmigrate.scripts.operations import Precondition


def reread_pending(
    store: Store, pending: list[Any], chunk: int
) -> tuple[dict[tuple[str, int], str], dict[str, Any], set[tuple[str, Any]]]:
    """Journaled operations whose outcome is unknown, settled by re-reading their documents:
    the outcome of each ((run id, seq) -> reconcile.LANDED / NOT_SENT / CHANGED), the
    documents read, and the atomic groups ((run id, group)) broken by a changed member.
    An outcome that re-reading cannot tell stops with ReconcileError."""
    found: dict[tuple[str, int], str] = {}
    docs: dict[str, Any] = {}
    for rows in chunks(pending, chunk):
        docs.update(store.get_many({r["path"] for r in rows}))
        for row in rows:
            outcome = reconcile.outcome(
                row["kind"],
                Precondition.from_json(row["precondition"]),
                row["write"],
                docs.get(row["path"]),
            )
            if outcome == reconcile.UNKNOWN:
                raise ReconcileError(row["path"], row["kind"], row["run_id"])
            found[(row["run_id"], row["seq"])] = outcome
    broken = {
        (r["run_id"], r["grp"])
        for r in pending
        if r["grp"] is not None and found[(r["run_id"], r["seq"])] == reconcile.CHANGED
    }
    return found, docs, broken
