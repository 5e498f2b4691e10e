"""The per-document audit in the state file: writing, settling and reading operations.

`State` inherits these methods. The rows are in the compact layout of `compact` (schema
4): table `ops` (one small row per operation, keyed by the run's integer key and the
sequence) and table `blocks` (the batch's before-images and writes, compressed). A
dry-run planned without --plan-out keeps no copies: its rows live in a temporary table of
the connection (its report reads them; the state file keeps its counts and notes). A state
file of an older schema opened read-only is read in its own layout (`layout` < 4); a
writing command upgrades it first (`convert`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, Optional

from fsmigrate.errors import RunNotFound
from fsmigrate.state import compact
from fsmigrate.state.compact import COLUMNS, OpRow, RunInfo
from fsmigrate.state.schema import SCHEMA

COMPACT = 4  # the first schema with this layout
Statement = tuple[str, tuple[Any, ...]]  # SQL and its arguments
_INSERT = f"INSERT INTO {{}} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# A dry-run's scratch rows: the shape of `ops`, in the connection's temporary schema.
_SCRATCH = """
CREATE TEMP TABLE IF NOT EXISTS scratch_ops (
    run INTEGER NOT NULL, seq INTEGER NOT NULL, batch INTEGER NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, pre_time, pre_exists INTEGER, grp INTEGER, label TEXT,
    status TEXT NOT NULL, reason TEXT, commit_time, error TEXT, blk INTEGER,
    phash INTEGER NOT NULL, PRIMARY KEY (run, seq)) WITHOUT ROWID
"""
_V3_KEYS = (
    "precondition",
    "before",
    "after",
    "write",
    "grp",
    "label",
    "status",
    "reason",
    "commit_time",
    "error",
    "batch",
    "kind",
    "path",
)


class Operations:
    conn: sqlite3.Connection
    layout: int

    def init_operations(self, layout: int) -> None:
        self.layout = layout
        self._scratch: set[int] = set()  # runs whose rows are in scratch_ops
        self._next_blk: dict[int, int] = {}
        self._blocks = compact.Blocks(self._fetch_block)
        self.conn.create_function("fsm_label", 2, compact.decode_label, deterministic=True)

    # ---- runs as the rows know them -------------------------------------------------------------

    def _run_info(self, run_id: str) -> RunInfo:
        row = self.conn.execute(
            "SELECT key, id, project, database, mode, pruned_at, archive_policy FROM runs"
            " WHERE id=?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunInfo(
            row["key"],
            row["id"],
            f"projects/{row['project']}/databases/{row['database']}/documents/",
            pruned=row["pruned_at"] is not None,
            scratch=row["key"] in self._scratch,
            archive=row["archive_policy"],
            mode=row["mode"],
        )

    def _table(self, run: RunInfo) -> str:
        return "scratch_ops" if run.scratch else "ops"

    def _fetch_block(self, run: int, blk: int) -> Optional[bytes]:
        row = self.conn.execute(
            "SELECT data FROM blocks WHERE run=? AND blk=?", (run, blk)
        ).fetchone()
        return row[0] if row else None

    # ---- writing -------------------------------------------------------------------------------

    def record_ops(
        self, run_id: str, batch: int, records: Sequence[Any], *, also: Sequence[Statement] = ()
    ) -> None:
        """Write a batch's operations in ONE transaction (before it is sent, when applying;
        a Beam worker's batch whose outcome is known: `committed` and `skipped` rows as
        they are), with the statements `also` (what must be recorded with them, or not at
        all). A dry-run's batch without writes (no --plan-out) goes to the scratch table."""
        run = self._run_info(run_id)
        if (
            not run.scratch
            and run.mode == "dry-run"
            and records
            and all(r.write is None for r in records)
        ):
            self.conn.execute(_SCRATCH)
            self._scratch.add(run.key)
            run = self._run_info(run_id)
        with self.tx():  # type: ignore[attr-defined]
            if run.scratch:
                rows, blocks = compact.encode(run, batch, records, 0, keep_parts=False)
            else:
                first = self._next_blk.get(run.key)
                if first is None:
                    first = self.conn.execute(
                        "SELECT COALESCE(MAX(blk), -1) + 1 FROM blocks WHERE run=?", (run.key,)
                    ).fetchone()[0]
                rows, blocks = compact.encode(run, batch, records, first)
                self._next_blk[run.key] = first + len(blocks)
                self.conn.executemany(
                    "INSERT INTO blocks (run, blk, data) VALUES (?,?,?)",
                    [(run.key, blk, data) for blk, data in blocks],
                )
            self.conn.executemany(_INSERT.format(self._table(run)), rows)
            by_status = Counter(r.status for r in records)
            self.conn.execute(
                "UPDATE runs SET planned=planned+?, failed=failed+?, committed=committed+?,"
                " skipped=skipped+?, batches=MAX(batches, ?) WHERE key=?",
                (
                    len(records),
                    by_status["pending"],
                    by_status["committed"],
                    by_status["skipped"],
                    batch,
                    run.key,
                ),
            )
            for sql, args in also:
                self.conn.execute(sql, args)

    def settle_old(self, updates: Sequence[tuple[str, str, int, str]]) -> None:
        """(status, reason, seq, run_id): outcomes found for a crashed run's pending ops."""
        runs = {run_id: self._run_info(run_id) for run_id in {u[3] for u in updates}}
        with self.tx():  # type: ignore[attr-defined]
            for run_id, run in runs.items():
                self.conn.executemany(
                    f"UPDATE {self._table(run)} SET status=?, reason=? WHERE seq=? AND run=?",
                    [(s, why, seq, run.key) for s, why, seq, r in updates if r == run_id],
                )
                self.update_totals(run_id)

    def settle_ops(
        self,
        run_id: str,
        *,
        committed: Iterable[tuple[int, str]],
        skipped: Iterable[tuple[int, str]] = (),
        failed: Iterable[tuple[int, str]] = (),
        also: Sequence[Statement] = (),
    ) -> None:
        """Record a batch's outcome: (seq, commit time) of what committed, (seq, reason) of
        what was skipped, (seq, error) of what failed; with the statements `also`, in the
        same transaction."""
        committed, skipped, failed = list(committed), list(skipped), list(failed)
        run = self._run_info(run_id)
        table = self._table(run)
        with self.tx():  # type: ignore[attr-defined]
            self.conn.executemany(
                f"UPDATE {table} SET status='committed', commit_time=? WHERE run=? AND seq=?",
                [(compact.encode_time(when), run.key, seq) for seq, when in committed],
            )
            self.conn.executemany(
                f"UPDATE {table} SET status='skipped', reason=? WHERE run=? AND seq=?",
                [(reason, run.key, seq) for seq, reason in skipped],
            )
            self.conn.executemany(
                f"UPDATE {table} SET status='failed', error=? WHERE run=? AND seq=?",
                [(error, run.key, seq) for seq, error in failed],
            )
            # counters move incrementally (a recount per batch would make a run quadratic)
            done, gone = len(committed), len(skipped)
            self.conn.execute(
                "UPDATE runs SET committed=committed+?, skipped=skipped+?, failed=failed-?"
                " WHERE key=?",
                (done, gone, done + gone, run.key),
            )
            for sql, args in also:
                self.conn.execute(sql, args)

    def next_position(self, run_id: str) -> tuple[int, int, int]:
        """Where a run's next journaled batch goes: (its batch number, its first sequence
        number, the run's next atomic group number), from what the state file holds."""
        run = self._run_info(run_id)
        table = self._table(run)
        row = self.conn.execute(
            f"SELECT COALESCE(MAX(seq) + 1, 0), COALESCE(MAX(grp), 0) + 1 FROM {table} WHERE run=?",
            (run.key,),
        ).fetchone()
        (batches,) = self.conn.execute(
            "SELECT batches FROM runs WHERE key=?", (run.key,)
        ).fetchone()
        return int(batches) + 1, int(row[0]), int(row[1])

    def update_totals(self, run_id: str) -> None:
        if self.layout < COMPACT:
            return
        run = self._run_info(run_id)
        table = self._table(run)
        self.conn.execute(
            "UPDATE runs SET"
            f" planned=(SELECT COUNT(*) FROM {table} WHERE run=:r),"
            f" committed=(SELECT COUNT(*) FROM {table} WHERE run=:r AND status='committed'),"
            f" skipped=(SELECT COUNT(*) FROM {table} WHERE run=:r AND status='skipped'),"
            f" failed=(SELECT COUNT(*) FROM {table} WHERE run=:r"
            "  AND status IN ('failed','pending')),"
            f" batches=(SELECT COALESCE(MAX(batch), 0) FROM {table} WHERE run=:r)"
            " WHERE key=:r",
            {"r": run.key},
        )

    # ---- reading -------------------------------------------------------------------------------

    def ops(
        self, run_id: str, *, status: Optional[str] = None, limit: Optional[int] = None
    ) -> Iterator[Any]:
        """A run's operations in order (rows with the keys of `compact.KEYS`)."""
        if self.layout < COMPACT:
            yield from self._legacy("SELECT * FROM ops WHERE run_id=?", [run_id], status, limit)
            return
        run = self._run_info(run_id)
        sql = f"SELECT * FROM {self._table(run)} WHERE run=?"
        args: list[Any] = [run.key]
        if status:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for row in self.conn.execute(sql, args):
            yield OpRow(row, run, self._blocks)

    def _legacy(
        self, sql: str, args: list[Any], status: Optional[str], limit: Optional[int]
    ) -> Iterator[sqlite3.Row]:
        if status:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        yield from self.conn.execute(sql, args)

    def pending_ops(self, run_ids: Sequence[str]) -> list[Any]:
        """Operations journaled but with no recorded outcome (sent or not: unknown)."""
        return [op for run_id in sorted(run_ids) for op in self.ops(run_id, status="pending")]

    def committed_among(self, run_ids: Sequence[str], paths: Sequence[str]) -> set[tuple[str, str]]:
        """(path, kind) of the operations on `paths` that committed in `run_ids` (found
        through the index of path hashes)."""
        if not run_ids or not paths:
            return set()
        keys = [self._run_info(r).key for r in run_ids]
        wanted = set(paths)
        hashes = sorted({compact.path_hash(p) for p in wanted})
        found = self.conn.execute(
            f"SELECT path, kind FROM ops INDEXED BY ops_phash WHERE phash IN "
            f"({','.join('?' * len(hashes))}) AND run IN ({','.join('?' * len(keys))})"
            " AND status='committed'",
            [*hashes, *keys],
        )
        return {(r["path"], r["kind"]) for r in found if r["path"] in wanted}

    def op_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """{kind: {status: n}} for a run (a dry-run whose rows were not kept: from its
        counts, all `planned`)."""
        key: str | int  # the run id (schema 3) or the run's key in its compact table
        if self.layout < COMPACT:
            sql, key = "SELECT kind, status, COUNT(*) n FROM ops WHERE run_id=?", run_id
        else:
            run = self._run_info(run_id)
            sql, key = (
                f"SELECT kind, status, COUNT(*) n FROM {self._table(run)} WHERE run=?",
                run.key,
            )
        out: dict[str, dict[str, int]] = {}
        for row in self.conn.execute(sql + " GROUP BY kind, status", (key,)):
            out.setdefault(row["kind"], {})[row["status"]] = row["n"]
        if not out:
            run_row = self.conn.execute(
                "SELECT mode, counts FROM runs WHERE id=?", (run_id,)
            ).fetchone()
            if run_row is not None and run_row["mode"] == "dry-run":
                counts = json.loads(run_row["counts"] or "{}")
                out = {kind: {"planned": n} for kind, n in counts.items() if n}
        return out

    def renamed(self, run_id: str) -> Iterator[sqlite3.Row]:
        """(label, status, reason) of a run's deletes labelled `old -> new`, by new ID."""
        key: str | int  # the run id (schema 3) or the run's key in its compact table
        if self.layout < COMPACT:
            source, key = (
                "SELECT label, status, reason FROM ops WHERE run_id=? AND kind='delete'",
                run_id,
            )
        else:
            run = self._run_info(run_id)
            source = (
                f"SELECT fsm_label(label, path) AS label, status, reason FROM "
                f"{self._table(run)} WHERE run=? AND kind='delete' AND label IS NOT NULL"
            )
            key = run.key
        yield from self.conn.execute(
            f"SELECT * FROM ({source}) WHERE label LIKE '% -> %'"
            " ORDER BY substr(label, instr(label, ' -> ') + 4), label",
            (key,),
        )

    def kept_ops(self, run_id: str) -> bool:
        """Whether the state file holds a run's operations (a dry-run without --plan-out
        keeps only its counts and notes, once the command that made it is done)."""
        key: str | int  # the run id (schema 3) or the run's key in its compact table
        if self.layout < COMPACT:
            sql, key = "SELECT 1 FROM ops WHERE run_id=? LIMIT 1", run_id
        else:
            run = self._run_info(run_id)
            sql, key = f"SELECT 1 FROM {self._table(run)} WHERE run=? LIMIT 1", run.key
        return self.conn.execute(sql, (key,)).fetchone() is not None

    # ---- the upgrade from schema 3 -----------------------------------------------------------

    def compact_operations(self) -> None:
        """Move every operation of an older file into the compact layout, in the upgrade's
        transaction; each run's rows are read back and compared with the old ones before
        the old table is dropped (a difference stops the upgrade: the file stays as it was)."""
        conn = self.conn
        orphans = conn.execute(
            "SELECT COUNT(*) FROM ops WHERE run_id NOT IN (SELECT id FROM runs)"
        ).fetchone()[0]
        if orphans:
            raise sqlite3.DatabaseError(f"{orphans} operations belong to no run")
        conn.execute("DROP INDEX IF EXISTS ops_path")
        conn.execute("ALTER TABLE ops RENAME TO ops_v3")
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        runs = conn.execute("SELECT id FROM runs ORDER BY key").fetchall()
        for (run_id,) in runs:
            self._compact_run(run_id)
        conn.execute("DROP TABLE ops_v3")

    def _compact_run(self, run_id: str) -> None:
        run = self._run_info(run_id)
        next_blk = 0
        batch: list[sqlite3.Row] = []
        for row in self.conn.execute("SELECT * FROM ops_v3 WHERE run_id=? ORDER BY seq", (run_id,)):
            if batch and row["batch"] != batch[0]["batch"]:
                next_blk = self._compact_batch(run, batch, next_blk)
                batch = []
            batch.append(row)
        if batch:
            self._compact_batch(run, batch, next_blk)

    def _compact_batch(self, run: RunInfo, old: list[sqlite3.Row], next_blk: int) -> int:
        records = [
            SimpleNamespace(
                seq=r["seq"],
                kind=r["kind"],
                path=r["path"],
                precondition=r["precondition"],
                before=r["before"],
                write=r["write"],
                after=r["after"],
                group=r["grp"],
                label=r["label"],
                status=r["status"],
                reason=r["reason"],
                commit_time=r["commit_time"],
                error=r["error"],
                no_write=r["write"] is None,
            )
            for r in old
        ]
        rows, blocks = compact.encode(run, old[0]["batch"], records, next_blk)
        self.conn.executemany(
            "INSERT INTO blocks (run, blk, data) VALUES (?,?,?)",
            [(run.key, blk, data) for blk, data in blocks],
        )
        self.conn.executemany(_INSERT.format("ops"), rows)
        new = self.conn.execute(
            "SELECT * FROM ops WHERE run=? AND seq BETWEEN ? AND ? ORDER BY seq",
            (run.key, old[0]["seq"], old[-1]["seq"]),
        ).fetchall()
        if len(new) != len(old):
            raise sqlite3.DatabaseError(
                f"the upgrade to schema {COMPACT} would lose operations "
                f"of run {run.id}; the file was left as it was"
            )
        for before, row in zip(old, new, strict=True):
            now = OpRow(row, run, self._blocks)
            for key in _V3_KEYS + ("seq", "run_id"):
                was = before[key] if key != "before" else (before[key] or None)
                if now[key] != was:
                    raise sqlite3.DatabaseError(
                        f"the upgrade to schema {COMPACT} would change the {key} of operation "
                        f"{before['seq']} of run {run.id}; the file was left as it was"
                    )
        return next_blk + len(blocks)
