"""Domain errors. They carry data; the CLI turns them into one line `FAILED: ...`.

The core never prints and never exits: it raises one of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional


class FsMigrateError(Exception):
    """Base class. `exit_code` is what the CLI exits with (see README, Exit codes)."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal: SIGTERM raises this (SIGINT raises Python's own
    KeyboardInterrupt, its base) where the main thread is, like Ctrl-C. A run it stops is
    recorded as `interrupted`; the same command resumes it. The CLI exits 128 + signum
    (130 for SIGINT, 143 for SIGTERM), as shells do."""

    def __init__(self, signum: int, name: str) -> None:
        self.signum, self.name = signum, name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {name}")


class FsMigrateWarning(UserWarning):
    """Something the user should know that does not stop the command (a state file others
    can read). Raised through `warnings.warn`; the CLI prints `WARNING: ...` on stderr."""


class UsageError(FsMigrateError):
    """Bad input from the user (a wrong option value, a missing project...)."""

    exit_code = 2


# ---- migration scripts -------------------------------------------------------------


class ScriptError(FsMigrateError):
    """Something is wrong with the migration scripts on disk."""


class ScriptImportError(ScriptError):
    def __init__(self, path: Path, exc: BaseException) -> None:
        self.path = path
        self.exc = exc
        super().__init__(f"{path} does not import: {type(exc).__name__}: {exc}")


class ScriptInvalid(ScriptError):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class DuplicateRevision(ScriptError):
    def __init__(self, revision: str, paths: Sequence[Path]) -> None:
        self.revision = revision
        self.paths = list(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(
            f"revision {revision} is defined by more than one script: {names}; if two "
            f"branches each added {revision}, move this branch's on top with "
            "`fsmigrate rebase FILE` (FILE: this branch's script)"
        )


class MultipleHeads(ScriptError):
    def __init__(self, heads: Sequence[str], paths: Sequence[Path]) -> None:
        self.heads = list(heads)
        self.paths = list(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(
            f"the migration chain has {len(self.heads)} heads ({', '.join(self.heads)}): {names}; "
            "make one of them point at the other with down_revision (`fsmigrate rebase "
            "FILE` moves a branch's migrations on top of the other head)"
        )


class MissingDownRevision(ScriptError):
    def __init__(self, revision: str, down_revision: str, path: Path) -> None:
        self.revision = revision
        self.down_revision = down_revision
        self.path = path
        super().__init__(
            f"{path}: down_revision {down_revision!r} of revision {revision} does not exist"
        )


class RevisionCycle(ScriptError):
    def __init__(self, revisions: Sequence[str], paths: Sequence[Path]) -> None:
        self.revisions = list(revisions)
        self.paths = list(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(
            f"the migration chain has a cycle ({' -> '.join(self.revisions)}): {names}"
        )


class NoBase(ScriptError):
    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        super().__init__(
            "no migration has down_revision = None, so the chain has no start: "
            + ", ".join(str(p) for p in self.paths)
        )


class UnknownRevision(UsageError):
    def __init__(self, revision: str) -> None:
        self.revision = revision
        super().__init__(
            f"revision {revision!r} is not in the migrations directory; "
            "run `fsmigrate status` to list revisions"
        )


class ScriptsChanged(ScriptError):
    """An applied script was edited or removed since it was applied (see `verify`)."""


# ---- state file --------------------------------------------------------------------


class StateError(FsMigrateError):
    pass


class StateNotFound(StateError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"state file {path} does not exist (nothing has run yet with this --state)"
        )


class StateCorrupt(StateError):
    """`path` is None when the failing file is not known (the CLI before its options)."""

    def __init__(self, path: Optional[Path], problem: str) -> None:
        self.path, self.problem = path, problem
        where = "the state file" if path is None else f"state file {path}"
        super().__init__(f"{where} cannot be used: {problem}; {_state_fix(problem)}")


def _state_fix(problem: str) -> str:
    """What to do about a state file SQLite refused: room or access is not damage."""
    lowered = problem.lower()
    if "disk is full" in lowered or "disk i/o error" in lowered and "full" in lowered:
        return (
            "free space on its disk, then run the same command again (nothing was lost: "
            "what committed is recorded, the rest is applied then)"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return "check that its directory is writable by you, or pass another --state"
    return "restore it from a backup, or pass another --state"


class StateSchemaTooNew(StateError):
    def __init__(self, path: Path, found: int, supported: int) -> None:
        self.path, self.found, self.supported = path, found, supported
        super().__init__(
            f"state file {path} has schema version {found}, this fsmigrate knows up to {supported}; "
            "upgrade fsmigrate"
        )


class RunNotFound(UsageError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} is not in the state file; run `fsmigrate audit` to list runs"
        )


# ---- plans and runs ----------------------------------------------------------------


class PlanError(FsMigrateError):
    """A migration's plan() did something it must not (bad operation, bad path...)."""

    def __init__(self, revision: str, problem: str) -> None:
        self.revision = revision
        self.problem = problem
        super().__init__(f"migration {revision}: {problem}")


class MigrationFailed(FsMigrateError):
    """The migration's own code raised while planning or applying."""

    def __init__(self, revision: str, run_id: str, exc: BaseException, committed: int) -> None:
        self.revision = revision
        self.run_id = run_id
        self.exc = exc
        self.committed = committed
        super().__init__(
            f"migration {revision} failed in run {run_id} after {committed} committed operations: "
            f"{type(exc).__name__}: {exc}; see `fsmigrate audit {run_id}`"
        )


class MigrationBlocked(FsMigrateError):
    """The last apply of a revision failed in the migration's own code; nothing goes past it."""

    def __init__(self, revision: str, run_id: str, error: str) -> None:
        self.revision, self.run_id, self.error = revision, run_id, error
        super().__init__(
            f"migration {revision} failed in run {run_id} ({error}); fix the script and run "
            f"upgrade again (it resumes after what committed), or accept it as applied with "
            f'`fsmigrate resolve {revision} --reason "..."`'
        )


class RunStopped(FsMigrateError):
    """A run stopped on purpose: `fsmigrate control stop`, or past its --max-skip-ratio.
    What committed is recorded and nothing is left in flight: the next `upgrade` (or
    `rerun`) goes on from there. Exit code 4."""

    exit_code = 4

    def __init__(self, revision: str, run_id: str, why: str) -> None:
        # why: "stopped by WHO@HOST at WHEN: REASON", as recorded with the run
        self.revision, self.run_id, self.why = revision, run_id, why
        super().__init__(
            f"run {run_id} of migration {revision} {why}; what committed is "
            "recorded and nothing is in flight: run the same command again to go on "
            f"(see `fsmigrate audit {run_id}`)"
        )


class NothingToControl(FsMigrateError):
    """`fsmigrate control` found no run holding the target's lock."""

    def __init__(self, target: str) -> None:
        super().__init__(
            f"no fsmigrate run holds the lock on {target}: nothing to control "
            "(`fsmigrate status` shows a running run)"
        )


class ReconcileError(FsMigrateError):
    """A write's outcome is unknown and cannot be told by re-reading the document."""

    def __init__(self, path: str, kind: str, run_id: str = "") -> None:
        self.path, self.kind, self.run_id = path, kind, run_id
        where = f" of run {run_id}" if run_id else ""
        super().__init__(
            f"cannot tell whether the {kind} of {path}{where} landed (it uses server-side "
            "transforms); check the document, then `fsmigrate resolve` or rerun"
        )


class FirestoreError(FsMigrateError):
    """Firestore answered with an error we cannot resolve by ourselves."""

    def __init__(self, what: str, exc: BaseException) -> None:
        self.what = what
        self.exc = exc
        super().__init__(f"{what}: {type(exc).__name__}: {exc}")


class IndexMissing(FirestoreError):
    """A query refused for want of a composite index (FAILED_PRECONDITION): the message
    names the index and the command that creates it (`index`: a NeededIndex, or None when
    Firestore's message could not be read)."""

    def __init__(self, what: str, exc: BaseException, index: Any = None) -> None:
        self.what, self.exc, self.index = what, exc, index
        if "currently building" in str(exc):
            which = f": {index.describe()}" if index is not None else ""
            text = (
                f"{what}: the composite index the query needs is still building{which}; "
                "wait until `gcloud firestore indexes composite list` shows it READY, then "
                "run again"
            )
        elif index is None:
            text = f"{what}: the query needs an index the database does not have: {exc}"
        else:
            text = (
                f"{what}: the query needs a composite index the database does not have: "
                f"{index.describe()}; create it with `{index.gcloud()}` (or open "
                f"{index.link}), wait until it is READY, then run again"
            )
        FsMigrateError.__init__(self, text)


class SnapshotTooOld(FsMigrateError):
    """A read at a `read_time` older than the database keeps versions (an hour; seven days
    with point-in-time recovery, which the emulator has): an `--as-of` too far back, or a
    plan that outlived the window."""

    def __init__(self, read_time: Any, limit: str = "") -> None:
        self.read_time = read_time
        stamp = read_time.isoformat() if hasattr(read_time, "isoformat") else str(read_time)
        kept = limit or ("Firestore keeps versions for 1 hour, 7 days with point-in-time recovery")
        super().__init__(
            f"read time {stamp} is older than the versions the database keeps ({kept}); "
            "nothing was written past it: plan again with a later --as-of (or none: the "
            "plan reads as of its start), or split the migration so one plan takes less time"
        )


class TransientError(FirestoreError):
    """Firestore kept answering with a transient error (UNAVAILABLE, DEADLINE_EXCEEDED...)."""


class RequestTooLarge(FirestoreError):
    """Firestore refused a commit for its size (the emulator's 4 MiB gRPC limit, production's
    10 MiB request limit). Nothing of it was applied: the caller splits the batch."""


class WriteTooLarge(FsMigrateError):
    """One write (or one atomic group) is bigger than a commit may be."""

    def __init__(self, path: str, size: int, limit: int, what: str = "write") -> None:
        self.path, self.size, self.limit = path, size, limit
        super().__init__(
            f"the {what} of {path} is {size:,} bytes encoded and cannot fit in a commit of at "
            f"most {limit:,} bytes (--batch-bytes); raise --batch-bytes (production takes up "
            "to 9.5 MiB, the emulator 4 MiB) or make the document smaller"
        )


class PlanFileInvalid(FsMigrateError):
    """A reviewed plan file is not the plan that was reviewed (cut short, edited, damaged)."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"{path}: {problem}; nothing was applied: make and review a new plan "
            "(`fsmigrate upgrade --dry-run --plan-out FILE`)"
        )


class PlanRefused(FsMigrateError):
    """A plan file `apply` will not apply here: not a plan, for another target, already
    applied, stale. Like PlanFileInvalid, exit 1 (every refusal of a plan exits 1)."""

    def __init__(self, path: Any, problem: str, next_step: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}; nothing was applied: {next_step}")


NEW_PLAN = "make and review a new plan (`fsmigrate upgrade --dry-run --plan-out FILE`)"


class RestoreRefused(FsMigrateError):
    """A restore that would not do what was asked (a --doc the run never touched)."""


class Aborted(FsMigrateError):
    """The operator declined a confirmation (`FAILED: declined at the prompt`)."""


# ---- emulator ----------------------------------------------------------------------


class EmulatorError(FsMigrateError):
    pass


class EmulatorNotFound(EmulatorError):
    def __init__(self, searched: Sequence[str]) -> None:
        self.searched = list(searched)
        super().__init__(
            "the Firestore emulator jar was not found (looked in: "
            + "; ".join(self.searched)
            + "); install the Debian package google-cloud-cli-firestore-emulator "
            "(or `gcloud components install cloud-firestore-emulator`), "
            "or set FSMIGRATE_EMULATOR_JAR to the jar"
        )


# ---- raised by more than one layer: the lease, the archive, prune, checks, Beam -----


class StateBusy(FsMigrateError):
    """An apply is running from the state file: a prune (which rebuilds the file) waits."""

    exit_code = 3


class ConfirmationRequired(FsMigrateError):
    """A step that needs an operator's yes (an apply to a real project, a prune) was called
    without a `confirm` callback (the CLI's prompt, or --yes)."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        super().__init__(f"{prompt} not confirmed: pass confirm= (the CLI asks, or takes --yes)")


class ArchiveUnavailable(FsMigrateError):
    """A run's before-images are not there: pruned, or never kept (archive = "paths")."""

    exit_code = 1


class LockHeld(FsMigrateError):
    """Another runner holds the lease. Exit code 3: try again later."""

    exit_code = 3

    def __init__(self, holder: dict[str, Any], target: str, described: str) -> None:
        self.holder = holder
        super().__init__(
            f"another fsmigrate holds the lock on {target}: {described}; wait for it to "
            "finish, or if that process is dead and you cannot wait for the lock to expire, "
            "run `fsmigrate break-lock`"
        )


class LockLost(FsMigrateError):
    """The lease was taken from us (broken or expired) while the run was going on."""

    def __init__(self, target: str, why: str) -> None:
        super().__init__(
            f"lost the lock on {target} during the run ({why}); stopped before "
            "the next batch; run `fsmigrate upgrade` again to resume"
        )


class BeamPipelineFailed(FsMigrateError):
    """The pipeline stopped (a worker died, Firestore kept failing...). What committed is
    recorded; the same command again finishes the migration."""


class CheckNotFound(UsageError):
    """No installed check has that name."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        listed = ", ".join(known) or "none installed"
        super().__init__(
            f"no check named {name!r} (available: {listed}); checks are found "
            f"through the entry-point group 'fsmigrate.checks'"
        )


class CheckBroken(FsMigrateError):
    """A check could not be loaded, or returned something that is not a CheckResult."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"check {name!r} could not be loaded: {problem}")
