"""A Beam apply's journal, brought into the state file.

A Beam run's workers journal each batch in files of their own (`workfiles`), outside the
state file: the batch before they send it, its outcome after. The coordinator records
where that journal is with the run BEFORE its pipeline starts, and imports it after
(`import_batches`). A coordinator that dies (its machine, its CI job: on Dataflow the job
runs on without it until its lease lapses) leaves the journal `recorded`; the next
command that takes the target's lease imports it first (`import_orphans`), before it
settles anything or plans:

- a batch with an outcome file is recorded committed and skipped as the worker saw it;
- a batch without one is settled by re-reading its documents: landed (committed),
  changed since the plan (skipped), or never sent, which stays `pending` for the next
  apply of its revision to redo, as after a local run killed mid-batch. The workers
  commit only while the dead coordinator's lease is good, with a deadline before it
  expires (`pipeline._LeaseFence`), so by the time another command holds the lease no
  commit of theirs is still in flight, and the re-read tells.

The state file is one operator's: another operator, machine or CI job runs with another.
So the coordinator also records the journal in the target database, beside the markers
(`publish`: `_fsmigrate/meta/journals/{run}`, with the run's revision, checksum, operator
and host), before the pipeline starts, and deletes that record once the journal is
imported (before the journal's files are removed: a record never names a journal that is
gone). Whoever takes the lease next, with whatever state file, finds the record: a run
its state file does not know is adopted (`State.adopt_journal`) and its journal imported
under it, as above; a journal that cannot be read from there is named in a warning by
each command that takes the lease, until it is imported where it can be.

Each batch file is recorded with its operations in one transaction: with its outcome when
its outcome file is there (the rows as they ended), otherwise `pending`, and its outcome
in another transaction when it comes (`State.journal_batch`, `State.journal_settled`). So
an import stopped at any instant is finished by the next one: nothing recorded twice,
nothing missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

from fsmigrate.beam import workfiles
from fsmigrate.engine import reconcile, testhooks
from fsmigrate.engine.batching import MAX_BATCH
from fsmigrate.engine.settle import reread_pending
from fsmigrate.firestore.store import Leases, Store
from fsmigrate.scripts.operations import Precondition
from fsmigrate.state.database import OpRecord, State
from fsmigrate.state.journals import IMPORTED, RECORDED
from fsmigrate.words import plural

OnBatch = Callable[[Sequence[OpRecord]], None]


def import_batches(
    state: State,
    run_id: str,
    directory: str,
    *,
    status: str = "pending",
    on_batch: Optional[OnBatch] = None,
) -> int:
    """Record under run `run_id` every batch file of the journal at `directory` that the
    state file does not hold yet (as `status`: `pending`, or `planned` for a dry-run),
    with its outcome when its outcome file exists; a batch recorded earlier without an
    outcome gets it now if it has one. `on_batch(records)` is called for each batch
    recorded. Returns how many batches were recorded."""
    track = status == "pending"  # an apply's journal: recorded batch by batch
    known = state.journal_batches(run_id) if track else {}
    number, seq, next_group = state.next_position(run_id)
    groups: dict[tuple[str, Any], int] = {}
    recorded = 0
    for name, path, has_outcome in workfiles.batch_files(directory):
        if name in known:
            base, _, settled = known[name]
            if not settled and has_outcome:
                _settle(state, run_id, name, base, workfiles.read_outcome(path))
            continue
        batch = workfiles.read_batch(path, has_outcome)
        outcomes = _by_index(batch.outcome) if track and batch.outcome is not None else None
        records = []
        for i, op in enumerate(batch.ops):
            group = None
            if op["group"] is not None:  # a worker's atomic group: a number of the run's
                group = groups.setdefault((batch.worker, op["group"]), next_group + len(groups))
            record = OpRecord(
                seq=seq + i,
                kind=op["kind"],
                path=op["path"],
                precondition=op["precondition"],
                before=op["before"],
                after=op["after"],
                status=status,
                write=op["write"],
                group=group,
                label=op["label"],
            )
            if outcomes is not None and i in outcomes:  # recorded as it ended, at once
                record.status, text = outcomes[i]
                if record.status == "committed":
                    record.commit_time = text
                else:
                    record.reason = text
            records.append(record)
        also = []
        if track:  # the batch file's name, and whether its outcome is in, with its rows
            also = [
                state.journal_batch(run_id, name, seq, len(records), settled=outcomes is not None)
            ]
        state.record_ops(run_id, number, records, also=also)
        testhooks.reached("import-batch", recorded + 1)
        if on_batch is not None:
            on_batch(records)
        number, seq, recorded = number + 1, seq + len(records), recorded + 1
    return recorded


def _by_index(outcome: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """A batch's outcome file as operation index -> (status, commit time or reason)."""
    found = {i: ("committed", when) for i, when in outcome["committed"]}
    found.update((i, ("skipped", why)) for i, why in outcome["skipped"])
    return found


def _settle(state: State, run_id: str, name: str, base: int, outcome: dict[str, Any]) -> None:
    state.settle_ops(
        run_id,
        committed=[(base + i, when) for i, when in outcome["committed"]],
        skipped=[(base + i, why) for i, why in outcome["skipped"]],
        also=[state.journal_settled(run_id, name)],
    )


def settle_by_rereading(store: Store, state: State, run_id: str, chunk: int = MAX_BATCH) -> int:
    """The operations of run `run_id` left `pending` (journaled by a worker, no outcome),
    settled by re-reading their documents: landed (committed) or changed since the plan
    (skipped, with every member of its atomic group); those never sent stay pending, for
    the next apply of the revision to redo (`Runner._resume`). Returns how many were
    settled. An outcome re-reading cannot tell stops with ReconcileError."""
    pending = state.pending_ops([run_id])
    if not pending:
        return 0
    found, docs, broken = reread_pending(store, pending, chunk)
    updates = []
    for row in pending:
        outcome = found[(run_id, row["seq"])]
        if outcome == reconcile.LANDED:
            why = "landed before its coordinator stopped (re-read)"
            updates.append(("committed", why, row["seq"], run_id))
        elif outcome == reconcile.CHANGED:
            why = Precondition.from_json(row["precondition"]).why_not(docs.get(row["path"]))
            updates.append(("skipped", why, row["seq"], run_id))
        elif (run_id, row["grp"]) in broken:
            why = "its atomic group was skipped (changed since plan)"
            updates.append(("skipped", why, row["seq"], run_id))
    if updates:
        state.settle_old(updates)
    return len(updates)


def _records(store: Store) -> str:
    return f"{store.reserved_root}/meta/journals"


def publish(store: Store, state: State, run_id: str, location: str, *, keep: bool) -> None:
    """Record run `run_id`'s journal in the target database (before its pipeline starts),
    with what another state file needs to adopt the run."""
    run = state.run(run_id)
    body = {
        "run_id": run_id,
        "location": location,
        "keep": keep,
        **{
            key: run[key]
            for key in (
                "invocation", "revision", "checksum", "description", "kind", "started_at",
                "operator", "host", "tool_version", "archive_policy", "read_time",
            )
        },
    }  # fmt: skip
    Leases(store).create(f"{_records(store)}/{run_id}", body)  # (one run id: one record)


def unpublish(store: Store, run_id: str) -> None:
    """The journal is imported (or was never written): its record goes."""
    Leases(store).delete(f"{_records(store)}/{run_id}")


def published(store: Store) -> dict[str, dict[str, Any]]:
    """The journals recorded in the target database and not imported yet, by run."""
    return {doc.id: doc.to_dict() for doc in store.scan(_records(store), include_reserved=True)}


def import_orphans(store: Store, state: State, *, by: str) -> list[str]:
    """Bring in the journal of every earlier Beam apply of the store's target that was
    not imported (its coordinator died, or stopped halfway through its import), and
    remove the journals imported but not removed yet. Call it holding the target's lease
    (so no coordinator of those runs is alive), before settling or planning anything.
    `by` names the command, for the runs' records. Returns what it did, a line each
    ("imported 22 batches (10,437 operations) of interrupted Beam run RUN")."""
    target = store.target
    done = []
    records = published(store)
    adopted: dict[str, str] = {}  # run id -> its launcher, for runs of another state file
    for run_id, record in records.items():  # another state file's runs: adopted here
        if state.journal(run_id) is not None:
            continue
        if not workfiles.readable_here(record["location"]):
            done.append(
                f"the journal of Beam run {run_id} ({record.get('operator', '?')}@"
                f"{record.get('host', '?')}, revision {record.get('revision', '?')}) is at "
                f"{record['location']}, which cannot be read from here: what its workers "
                "committed is not in this state file; run the same command where it can be "
                "read to import it"
            )
            continue
        state.adopt_journal(target.project, target.database, record)
        adopted[run_id] = f"{record.get('operator', '?')}@{record.get('host', '?')}"
    for row in state.open_journals(target.project, target.database):
        run_id, location = row["run_id"], row["location"]
        if row["state"] == RECORDED:
            if workfiles.exists(location):
                import_batches(state, run_id, location)
                settle_by_rereading(store, state, run_id)
            what = "interrupted" if row["status"] == "running" else row["status"]
            batches, ops = state.finish_import(run_id, by=by, interrupted=True)
            state.add_note(
                run_id,
                state.note_count(run_id),
                f"beam: the journal ({location}) was imported by {by}: "
                f"{plural(batches, 'batch', 'batches')} ({plural(ops, 'operation')})",
            )
            launched = f" (launched by {adopted[run_id]})" if run_id in adopted else ""
            done.append(
                f"imported {plural(batches, 'batch', 'batches')} ({plural(ops, 'operation')})"
                f" of {what} Beam run {run_id}{launched}"
            )
        if run_id in records:  # in this state file now: the record goes before the files
            unpublish(store, run_id)
            del records[run_id]
        if not row["keep"]:
            workfiles.remove_tree(location)
        state.journal_gone(run_id, kept=bool(row["keep"]))
    for run_id in records:  # imported here before; its record left by a coordinator
        known = state.journal(run_id)  # that stopped between the two
        if known is not None and known["state"] not in (RECORDED, IMPORTED):
            unpublish(store, run_id)
    return done
