"""Committing one journaled batch: what still holds lands, what changed is skipped.

A precondition failure never clobbers: the batch's documents are re-read, the operations
whose document changed or vanished are skipped (with the rest of their atomic group),
and the rest is committed without them. A transient error leaves the outcome unknown:
the batch is re-read and each operation found to have landed is recorded as committed,
never resent. A commit the server refuses as too large is split in halves. An atomic
group always goes in one commit.
"""

from __future__ import annotations

from typing import Optional

from fsmigrate.engine import reconcile
from fsmigrate.engine.traffic import Limiter, Ticket
from fsmigrate.errors import ReconcileError, RequestTooLarge, TransientError, WriteTooLarge
from fsmigrate.firestore.store import PRECONDITION_ERRORS, Store, status_code
from fsmigrate.scripts.operations import Operation
from fsmigrate.times import now_text, rfc3339

Numbered = list[tuple[int, Operation]]
Settled = list[tuple[int, str]]


def _units(numbered: Numbered) -> list[Numbered]:
    """Operations in commit units: an atomic group together, any other alone."""
    units: list[Numbered] = []
    by_group: dict[int, Numbered] = {}
    for item in numbered:
        group = item[1].group
        if group is None:
            units.append([item])
        elif group in by_group:
            by_group[group].append(item)
        else:
            by_group[group] = [item]
            units.append(by_group[group])
    return units


def _drop_broken_groups(numbered: Numbered, left: Numbered, skipped: Settled) -> Numbered:
    """When one operation of an atomic group is skipped, the rest of it is skipped too."""
    skipped_seqs = {seq for seq, _ in skipped}
    broken = {
        op.group: op.path for seq, op in numbered if op.group is not None and seq in skipped_seqs
    }
    if not broken:
        return left
    keep: Numbered = []
    for seq, op in left:
        if op.group in broken:
            skipped.append(
                (seq, f"its atomic group was skipped ({broken[op.group]} changed since plan)")
            )
        else:
            keep.append((seq, op))
    return keep


def _journaled_write(op: Operation) -> bytes:
    """The Write recorded in the state file before the commit (the journal comes first)."""
    assert op.write is not None, f"{op.path}: sent before its write was journaled"
    return op.write


class Committer:
    """Sends batches through `store`; `splits` counts commits refused as too large. With a
    `traffic` limiter, every commit (retries and halves included) first waits for its
    operations' tokens, and its answer goes back to the limiter."""

    def __init__(self, store: Store, batch_bytes: int, traffic: Optional[Limiter] = None) -> None:
        self.store = store
        self.batch_bytes = batch_bytes
        self.traffic = traffic
        self.splits = 0

    def _send(self, numbered: Numbered, ticket: Optional[Ticket] = None) -> str:
        """One commit of the operations' journaled writes (admitted by `ticket`, or after
        waiting for their tokens now); its commit time."""
        writes = [_journaled_write(op) for _, op in numbered]
        if self.traffic is None:
            return rfc3339(self.store.commit_writes(writes))
        if ticket is None:
            ticket = self.traffic.acquire(len(writes))
        try:
            when = self.store.commit_writes(writes)
        except TransientError as exc:
            self.traffic.done(ticket, status_code(exc.exc))
            raise
        except BaseException:
            self.traffic.done(ticket)  # answered, but not an overload
            raise
        self.traffic.done(ticket)
        return rfc3339(when)

    def commit(
        self, numbered: Numbered, admitted: Optional[Ticket] = None
    ) -> tuple[Settled, Settled]:
        """Commit what still holds; returns ((seq, commit time) committed, (seq, why) skipped).
        `admitted`: the limiter's ticket for the whole batch, taken by the caller (its
        first try goes with it; retries and halves wait for tokens of their own).

        A precondition failure re-reads the batch and drops the operations whose document
        changed. A transient error leaves the outcome unknown: the batch is re-read and
        each operation found to have landed is recorded as committed, never resent; the
        rest is retried with backoff (preconditions make a resend harmless)."""
        remaining = list(numbered)
        committed: Settled = []
        skipped: Settled = []
        ambiguous = False
        failures = 0
        while remaining:
            ticket, admitted = admitted, None
            try:
                when = self._send(remaining, ticket)
                return committed + [(seq, when) for seq, _ in remaining], skipped
            except RequestTooLarge as exc:
                more_committed, more_skipped = self._split(remaining, exc)
                return committed + more_committed, skipped + more_skipped
            except TransientError as exc:
                self.store.backoff(exc.what, failures, exc.exc)
                failures += 1
                ambiguous = True
            except PRECONDITION_ERRORS:
                pass
            before = len(remaining)
            remaining = self._sort_out(remaining, committed, skipped, ambiguous)
            if len(remaining) == before and not ambiguous:
                more_committed, more_skipped = self._bisect(remaining)
                return committed + more_committed, skipped + more_skipped
        return committed, skipped

    def _sort_out(
        self, numbered: Numbered, committed: Settled, skipped: Settled, ambiguous: bool
    ) -> Numbered:
        """Re-read the batch; move landed ops to `committed`, stale ones to `skipped`;
        return the ones still to send."""
        current = self.store.get_many({op.path for _, op in numbered})
        left: Numbered = []
        now = now_text()
        for seq, op in numbered:
            doc = current.get(op.path)
            found = reconcile.outcome(op.kind, op.precondition, op.write, doc)
            if found == reconcile.NOT_SENT:
                left.append((seq, op))
            elif ambiguous and found == reconcile.LANDED:
                committed.append((seq, now))
            elif ambiguous and found == reconcile.UNKNOWN:
                raise ReconcileError(op.path, op.kind)
            else:
                skipped.append((seq, op.precondition.why_not(doc)))
        return _drop_broken_groups(numbered, left, skipped)

    def _split(self, numbered: Numbered, exc: RequestTooLarge) -> tuple[Settled, Settled]:
        """The server refused the commit for its size, before applying any of it (the size
        is checked before the request is read): send it again in two halves, never
        splitting an atomic group. Not a transient error: the same request would fail again."""
        units = _units(numbered)
        if len(units) == 1:
            size = sum(len(op.write or b"") for _, op in numbered)
            what = "write" if len(numbered) == 1 else f"atomic group of {len(numbered)} writes"
            raise WriteTooLarge(
                numbered[0][1].path,
                size,
                self.batch_bytes,
                f"{what} (refused by the server: {exc.exc})",
            ) from exc
        self.splits += 1
        half = len(units) // 2
        left = self.commit([x for unit in units[:half] for x in unit])
        right = self.commit([x for unit in units[half:] for x in unit])
        return left[0] + right[0], left[1] + right[1]

    def _bisect(self, numbered: Numbered) -> tuple[Settled, Settled]:
        """Last resort when a re-read cannot tell which operation fails: halve and retry
        (never splitting an atomic group)."""
        try:
            when = self._send(numbered)
            return [(seq, when) for seq, _ in numbered], []
        except RequestTooLarge as exc:
            return self._split(numbered, exc)
        except PRECONDITION_ERRORS as exc:
            units = _units(numbered)
            if len(units) == 1:
                return [], [(seq, f"precondition failed: {exc.message}") for seq, _ in numbered]
        half = len(units) // 2
        left = self._bisect([x for unit in units[:half] for x in unit])
        right = self._bisect([x for unit in units[half:] for x in unit])
        return left[0] + right[0], left[1] + right[1]
