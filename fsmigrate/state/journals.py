"""Where each Beam apply's journal is, and how much of it the state file holds.

`State` inherits these methods. A Beam apply's workers journal each batch in files of
their own (fsmigrate.beam.workfiles), outside the state file, before they commit it. So
that a coordinator that dies cannot leave those commits unrecorded, the journal's
location is recorded with the run BEFORE its pipeline starts, and each batch file is
marked as recorded in the same transaction as its operations (`journal_batch`), and as
settled in the same transaction as its outcome (`journal_settled`). An import that
stopped halfway is finished by the next one; nothing is recorded twice.
"""

from __future__ import annotations

import json
import sqlite3

from fsmigrate.state.operations import Statement
from fsmigrate.times import now_text

RECORDED, IMPORTED, REMOVED, KEPT = "recorded", "imported", "removed", "kept"


class Journals:
    conn: sqlite3.Connection

    def record_journal(self, run_id: str, location: str, *, keep: bool = False) -> None:
        """Record where run `run_id`'s journal is, before anything writes to it."""
        with self.tx():  # type: ignore[attr-defined]
            self.conn.execute(
                "INSERT INTO journals (run_id, location, keep, recorded_at) VALUES (?,?,?,?)",
                (run_id, location, int(keep), now_text()),
            )

    def adopt_journal(self, project: str, database: str, record: dict) -> None:
        """Record a Beam apply of another state file (another operator, machine or CI job)
        whose journal the database's record names (`fsmigrate.beam.journal.publish`): its
        run, `running` as its coordinator left it, and its journal, `recorded`, to be
        imported under it. The run keeps its own id, revision, operator and host."""
        with self.tx():  # type: ignore[attr-defined]
            self.conn.execute(
                "INSERT INTO runs (id, invocation, project, database, revision, checksum,"
                " description, kind, mode, status, started_at, operator, host, tool_version,"
                " archive_policy, read_time)"
                " VALUES (?,?,?,?,?,?,?,?, 'apply', 'running', ?,?,?,?,?,?)",
                (
                    record["run_id"],
                    record.get("invocation") or record["run_id"],
                    project,
                    database,
                    record["revision"],
                    record["checksum"],
                    record.get("description") or "",
                    record.get("kind") or "upgrade",
                    record.get("started_at") or now_text(),
                    record.get("operator") or "?",
                    record.get("host") or "?",
                    record.get("tool_version") or "?",
                    record.get("archive_policy"),
                    record.get("read_time"),
                ),
            )
            self.conn.execute(
                "INSERT INTO journals (run_id, location, keep, recorded_at) VALUES (?,?,?,?)",
                (record["run_id"], record["location"], int(bool(record.get("keep"))), now_text()),
            )

    def journal(self, run_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM journals WHERE run_id=?", (run_id,)).fetchone()

    def open_journals(self, project: str, database: str) -> list[sqlite3.Row]:
        """The journals of the target's runs that are not imported yet, or imported and
        not removed yet, oldest first (with the run's revision, status and mode)."""
        return list(
            self.conn.execute(
                "SELECT j.*, r.revision, r.status, r.mode, r.kind FROM journals j"
                " JOIN runs r ON r.id = j.run_id"
                " WHERE r.project=? AND r.database=? AND j.state IN (?, ?)"
                " ORDER BY j.recorded_at, r.key",
                (project, database, RECORDED, IMPORTED),
            )
        )

    def journal_batches(self, run_id: str) -> dict[str, tuple[int, int, bool]]:
        """The batch files of a run's journal recorded so far: name -> (first sequence
        number, size, settled)."""
        return {
            r["name"]: (r["base"], r["size"], bool(r["settled"]))
            for r in self.conn.execute(
                "SELECT name, base, size, settled FROM journal_batches WHERE run_id=?", (run_id,)
            )
        }

    @staticmethod
    def journal_batch(
        run_id: str, name: str, base: int, size: int, *, settled: bool = False
    ) -> Statement:
        """The statement that marks a batch file recorded (`record_ops(..., also=)`);
        `settled`: with its outcome, in the same transaction."""
        return (
            "INSERT INTO journal_batches (run_id, name, base, size, settled) VALUES (?,?,?,?,?)",
            (run_id, name, base, size, int(settled)),
        )

    @staticmethod
    def journal_settled(run_id: str, name: str) -> Statement:
        """The statement that marks a batch file's outcome recorded (`settle_ops(..., also=)`)."""
        return (
            "UPDATE journal_batches SET settled=1 WHERE run_id=? AND name=?",
            (run_id, name),
        )

    def finish_import(self, run_id: str, *, by: str, interrupted: bool) -> tuple[int, int]:
        """Mark run `run_id`'s journal imported (by `by`, a command or a run) and its run's
        totals recounted; with `interrupted`, a run still `running` (its coordinator died)
        becomes `interrupted`. Returns (batches, operations) imported."""
        with self.tx():  # type: ignore[attr-defined]
            batches, ops = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM journal_batches WHERE run_id=?",
                (run_id,),
            ).fetchone()
            self.conn.execute(
                "UPDATE journals SET state=?, imported_at=?, imported_by=?, batches=?,"
                " operations=? WHERE run_id=? AND state=?",
                (IMPORTED, now_text(), by, batches, ops, run_id, RECORDED),
            )
            self.update_totals(run_id)  # type: ignore[attr-defined]
            if interrupted:
                kinds = self.op_counts(run_id)  # type: ignore[attr-defined]
                counts = {kind: sum(by_status.values()) for kind, by_status in kinds.items()}
                self.conn.execute(
                    "UPDATE runs SET status='interrupted', error_kind='interrupted', error=?,"
                    " finished_at=?, counts=? WHERE id=? AND status='running'",
                    (
                        "the coordinator stopped before the run finished; its journal was "
                        f"imported by {by}",
                        now_text(),
                        json.dumps(counts, sort_keys=True),
                        run_id,
                    ),
                )
        return int(batches), int(ops)

    def journal_gone(self, run_id: str, *, kept: bool) -> None:
        """The journal's files are removed (or kept on purpose): nothing left to do."""
        with self.tx():  # type: ignore[attr-defined]
            self.conn.execute(
                "UPDATE journals SET state=? WHERE run_id=?", (KEPT if kept else REMOVED, run_id)
            )
