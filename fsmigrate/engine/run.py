"""One migration's run, and the seam between the run loop and the way a run is distributed.

`Run` holds what lives for one run only: its id and script, its counts and notes, the
sequence numbers of its journaled operations, what it read and archived, and the tools it
shares with the runner (the store, the state file, the committer, the progress display,
the traffic limiter). A `Distributor` plans and applies one run: the local `Runner` does
it in this process, `fsmigrate.beam`'s coordinator through a Beam pipeline. Both receive
the same `Run` and record through its public methods, so neither reaches into the other.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

from fsmigrate.engine import tracing
from fsmigrate.engine.estimate import Tally
from fsmigrate.engine.lease import DEFAULT_TTL, Lease
from fsmigrate.scripts import archive
from fsmigrate.scripts.operations import KINDS

if TYPE_CHECKING:  # types only: no import at run time
    from fsmigrate.engine.commit import Committer
    from fsmigrate.engine.traffic import Limiter, Limits
    from fsmigrate.firestore.store import Store
    from fsmigrate.scripts.context import Context
    from fsmigrate.scripts.loader import Script
    from fsmigrate.state.database import State

DRY_RUN = "dry-run"
APPLY = "apply"

Done = set[tuple[str, str]]  # (path, kind) that earlier runs of the same revision wrote


class Progress(Protocol):
    """How a run reports its progress (the CLI's bar; `NoProgress` for none). `total` is
    the number of operations when it is known before they are planned, else None.
    `waiting` is told, before each retry, what the run waits for ("waiting for Firestore:
    UNAVAILABLE, retrying for up to 9m 12s more"), and None when it makes progress again
    (optional: a progress object without it is not told)."""

    def start(self, script: Script, mode: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...
    def waiting(self, message: Optional[str]) -> None: ...


class Control(Protocol):
    """The live controls of an apply (`fsmigrate.engine.control.Controller`)."""

    @property
    def stopped(self) -> Optional[str]: ...
    @property
    def interval(self) -> float: ...
    @property
    def max_skip_ratio(self) -> Optional[float]: ...

    def checkpoint(self, run: Run, settle: Callable[[], None]) -> None: ...
    def settled(self, ok: int, bad: int) -> None: ...
    def take(self, run: Run) -> None: ...
    def finish(self, run: Run) -> None: ...


class NoProgress:
    """The `Progress` that tells nothing: what a run reports to when none is given."""

    def start(self, script: Script, mode: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def waiting(self, message: Optional[str]) -> None:
        pass


@dataclass(frozen=True)
class RunSettings:
    """How the runner batches and sends: the same for every run of one command."""

    batch_size: int
    batch_bytes: int
    concurrency: int = 1
    capture_writes: bool = False  # a dry-run journals its exact writes (for --plan-out)
    lease_holder: Optional[str] = None  # the lease workers check before each commit
    lease_ttl: float = DEFAULT_TTL  # its TTL (workers stop writing before it expires)
    lease: Optional[Lease] = None  # the lease itself (a Beam run marks workers elsewhere)


@dataclass
class Run:
    """What lives for one migration's run (see the module's docstring)."""

    run_id: str
    script: Script
    dry_run: bool
    store: Store
    state: State
    committer: Committer
    progress: Progress
    settings: RunSettings
    limits: Optional[Limits] = None
    traffic: Optional[Limiter] = None
    policy: archive.Policy = archive.DEFAULT
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    notes: int = 0  # notes recorded so far (their text is in the state file only)
    tally: Tally = field(default_factory=Tally)
    context: Optional[Context] = None
    extra_reads: int = 0  # reads done elsewhere (Beam workers)
    extra_retries: int = 0  # retries done elsewhere (Beam workers)
    extra_waited: float = 0.0  # seconds waited for Firestore elsewhere (Beam workers)
    seq: int = 0  # the next operation's sequence number in the journal
    batches: int = 0  # batches journaled so far
    groups: int = 0  # atomic groups numbered so far
    earlier: list[str] = field(default_factory=list)  # interrupted runs this one resumes
    redone: Done = field(default_factory=set)  # what this run redid of theirs
    started: float = field(default_factory=time.monotonic)
    retries_before: int = 0  # the store's retries and seconds waited when the run began
    waited_before: float = 0.0
    # the instant every read of the plan is made at (its snapshot); None: reads are of
    # the moment they are made (a run that only replays a reviewed plan's writes)
    read_time: Optional[dt.datetime] = None
    control: Optional[Control] = None  # live control of an apply (None: a dry-run)
    span: tracing.Span = tracing.NO_SPAN  # the run's trace span (commits are its children)

    @property
    def revision(self) -> str:
        return self.script.revision

    @property
    def mode(self) -> str:
        return DRY_RUN if self.dry_run else APPLY

    @property
    def reads(self) -> int:
        """Documents read: by the plan's context, the blind sets' reads, and elsewhere."""
        own = self.context.reads if self.context is not None else 0
        return own + self.tally.blind_reads + self.extra_reads

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def retries(self) -> int:
        """Transient Firestore errors retried during this run (here and on workers)."""
        return self.store.retries - self.retries_before + self.extra_retries

    @property
    def waited(self) -> float:
        """Seconds this run spent waiting for Firestore without progress (workers'
        included: their waits add up)."""
        return self.store.waited - self.waited_before + self.extra_waited

    def written_before(self, paths: list[str]) -> set[str]:
        """Which of `paths` the interrupted runs this one resumes already wrote (or this run
        redid for them): a resumed run never writes them again, whatever the plan now says
        of them (a re-plan of a changed document may differ)."""
        if not self.earlier:
            return set()
        done = self.state.committed_among(self.earlier, paths) | self.redone
        return {path for path, _ in done}

    def all_written_before(self) -> Done:
        """Everything `written_before` would name, at once (for workers that cannot ask)."""
        if not self.earlier:
            return set()
        return self.state.committed_among_runs(self.earlier) | self.redone

    def note(self, text: str) -> None:
        """A note for people, kept with the run in the state file."""
        self.state.add_note(self.run_id, self.notes, text, later=True)
        self.notes += 1

    def next_batch(self, size: int) -> tuple[int, int]:
        """Number the next journaled batch of `size` operations: (batch number, first seq)."""
        self.batches += 1
        base = self.seq
        self.seq += size
        return self.batches, base

    def add_usage(
        self, *, reads: int = 0, archive_bytes: int = 0, retries: int = 0, waited: float = 0.0
    ) -> None:
        """Reads, archived bytes, retries and waits done outside this process (Beam
        workers)."""
        self.extra_reads += reads
        self.tally.archive_bytes += archive_bytes
        self.extra_retries += retries
        self.extra_waited += waited


class Distributor(Protocol):
    """Plans and applies one run: in this process (`Runner`) or across workers (Beam).

    `check` refuses, before anything runs, a script this way cannot run. `distribute` is
    called after the lease is taken, drift checked and an interrupted earlier run settled;
    what earlier runs of the revision already wrote is never written again
    (`run.written_before`).
    It numbers its batches with `run.next_batch`, journals them in `run.state`, and raises `ScriptRaised` when the
    migration's own code failed, an `FsMigrateError` for anything else. With
    `run.control`, it takes the live controls at its batch boundaries (the local loop
    through `Controller.checkpoint`, Beam workers through the control document) and
    raises `RunStopped` after a stop, once nothing is left in flight."""

    def check(self, script: Script) -> None: ...

    def distribute(self, run: Run) -> None: ...


class ScriptRaised(Exception):
    """Wraps an exception raised by the migration's own code while planning (or by its
    archive function); the runner records the run as failed by the migration."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc
