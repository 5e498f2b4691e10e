"""`fsmigrate doctor`: what the target will refuse, found before a long run starts.

Like `flyway validate` or terraform's provider checks, each check is one line, ok / warn /
fail / skip, with the next step when it is not ok:

- the principal the credentials act as (a service account's email, or the user);
- the database exists and is in Native mode (the admin API, GetDatabase);
- point-in-time recovery: how far back `--as-of` (and a read of an older version) reaches;
- delete protection;
- a read, a write and a delete of a probe document under the reserved root (`_fsmigrate/`
  by default; never user data), through the same calls a run makes;
- each pending migration that declares its query (`source = scan(...)`): the query, with
  a limit of one, is sent to the server, which refuses it when a composite index is
  missing: the check names the index and the command that creates it.

The emulator has no admin API and serves every query without an index: those checks say
so (skip, or ok with that caveat). A check that fails means a run would fail (exit 1);
a warning is something to decide on (point-in-time recovery off, say).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fsmigrate.distributed import Source
from fsmigrate.errors import FsMigrateError, IndexMissing
from fsmigrate.firestore.admin import DatabaseAnswer, DatabaseInfo, read_database
from fsmigrate.firestore.store import Leases, Store, Target

__all__ = ["Check", "DoctorReport", "Principal", "credentials_source", "diagnose", "principal_of"]

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
NO_PITR_WINDOW = dt.timedelta(hours=1)  # how far back reads go without point-in-time recovery


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok / warn / fail / skip
    detail: str
    next_step: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "next": self.next_step or None,
        }


@dataclass(frozen=True)
class Principal:
    """Who the calls are made as."""

    kind: str  # service account, impersonated service account, user, external account, ...
    email: Optional[str]  # the account, when the credentials say it
    source: str = ""  # where the credentials came from (a key file, ADC...), when known

    def describe(self) -> str:
        who = f"{self.kind} {self.email}" if self.email else self.kind
        return f"{who} ({self.source})" if self.source else who

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "email": self.email, "source": self.source or None}


@dataclass
class DoctorReport:
    """What `doctor` found on the target, one check a line.

    Attributes:
        target: The project and database.
        principal: Who the credentials act as.
        checks: Each check: its name, ok, warn or fail, what it found, and the next step.
        endpoint: The API endpoint, when not the default one.
    """

    target: Target
    principal: Principal
    checks: list[Check] = field(default_factory=list)
    endpoint: Optional[str] = None  # the API endpoint, when not the default one

    @property
    def ok(self) -> bool:
        """No check failed (warnings and skips allowed)."""
        return not any(c.status == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL, SKIP)}


def principal_of(credentials: Any, source: str = "") -> Principal:
    """The principal of google-auth credentials (None: the emulator, which takes none)."""
    if credentials is None:
        return Principal("no credentials", None, source or "the emulator needs none")
    kind_of = type(credentials).__module__ + "." + type(credentials).__name__
    email = getattr(credentials, "service_account_email", None)
    if "impersonated_credentials" in kind_of:
        return Principal("impersonated service account", email, source)
    if "service_account" in kind_of:
        return Principal("service account", email, source)
    if "compute_engine" in kind_of:
        if email in (None, "default"):
            return Principal("the machine's default service account", None, source)
        return Principal("service account", email, source)
    if "external_account" in kind_of or "identity_pool" in kind_of or "aws" in kind_of:
        if email:
            return Principal("service account (workload identity federation)", email, source)
        return Principal("external account (workload identity federation)", None, source)
    if "oauth2.credentials" in kind_of or "_cloud_sdk" in kind_of:
        account = getattr(credentials, "account", "") or None
        return Principal("user", account, source)
    return Principal(type(credentials).__name__, email, source)


_FILE_KINDS = {
    "service_account": "key file",
    "authorized_user": "user credentials file",
    "external_account": "workload identity federation file",
    "impersonated_service_account": "impersonation file",
}


def credentials_source(file: Optional[str], impersonating: bool = False) -> str:
    """Where the credentials come from, in words: `file` (a credentials file given to
    fsmigrate), else GOOGLE_APPLICATION_CREDENTIALS's, else the application default
    credentials (gcloud's, or the metadata server's)."""
    path = file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    if path is None:
        base = "application default credentials"
    else:
        try:
            kind = json.loads(Path(path).read_text(encoding="utf-8")).get("type")
        except (OSError, ValueError, AttributeError):
            kind = None
        base = f"{_FILE_KINDS.get(str(kind), 'credentials file')} {path}"
    return f"impersonated through {base}" if impersonating else base


# ---- the checks -------------------------------------------------------------------------------


def _database_checks(target: Target, answer: Optional[DatabaseAnswer], who: str) -> list[Check]:
    """database, point-in-time recovery, delete protection."""
    project, database = target.project, target.database
    update = f"gcloud firestore databases update --project={project} --database='{database}'"
    if answer is None or answer.code == "UNIMPLEMENTED":
        why = (
            "the emulator has no admin API"
            if target.is_emulator
            else "this endpoint has no admin API (UNIMPLEMENTED)"
        )
        return [
            Check("database", SKIP, f"{why}: mode and settings are checked on Google Cloud only"),
            Check("point-in-time recovery", SKIP, why),
            Check("delete protection", SKIP, why),
        ]
    info = answer.info
    if info is None:
        needs = "needs the database's settings (see above)"
        if answer.code == "NOT_FOUND":
            first = Check(
                "database",
                FAIL,
                f"project {project} has no database {database}",
                f"check --project and --database (`gcloud firestore databases list "
                f"--project={project}`)",
            )
        elif answer.code == "PERMISSION_DENIED":
            first = Check(
                "database",
                WARN,
                "cannot read the database's settings: permission denied "
                "(datastore.databases.getMetadata)",
                f"grant {who} roles/datastore.viewer to check the mode, point-in-time "
                "recovery and delete protection",
            )
        else:
            first = Check(
                "database",
                WARN,
                f"cannot read the database's settings: {answer.code}: {answer.message}",
                "run doctor again; if it persists, check the endpoint and the network",
            )
        return [
            first,
            Check("point-in-time recovery", SKIP, needs),
            Check("delete protection", SKIP, needs),
        ]
    return [_mode(info, project), _pitr(info, update), _protection(info, update)]


def _mode(info: DatabaseInfo, project: str) -> Check:
    if not info.native:
        return Check(
            "database",
            FAIL,
            f"{info.name} is in {info.type.replace('_', ' ').lower()}; fsmigrate works on "
            "Firestore in Native mode",
            f"point --database at a Native-mode database (`gcloud firestore databases list "
            f"--project={project}`)",
        )
    return Check("database", OK, f"{info.name} exists, Firestore Native mode, in {info.location}")


def _pitr(info: DatabaseInfo, update: str) -> Check:
    if info.pitr:
        window = info.version_retention or dt.timedelta(days=7)
        earliest = (
            f"; the oldest --as-of now: {info.earliest_version_time.isoformat(timespec='seconds')}"
            if info.earliest_version_time
            else ""
        )
        return Check(
            "point-in-time recovery",
            OK,
            f"on: reads reach back {_span(window)}{earliest} (--as-of, and older versions "
            "of a document beyond the archive)",
        )
    return Check(
        "point-in-time recovery",
        WARN,
        f"off: --as-of reaches back {_span(NO_PITR_WINDOW)} only, and nothing older than the "
        "archive in the state file can be read back from Firestore",
        f"to keep 7 days of versions: `{update} --enable-pitr`",
    )


def _protection(info: DatabaseInfo, update: str) -> Check:
    if info.delete_protection:
        return Check("delete protection", OK, "on: the database cannot be deleted by mistake")
    return Check(
        "delete protection",
        WARN,
        "off: the whole database can be deleted by one command",
        f"`{update} --delete-protection`",
    )


def _span(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def _probe_checks(store: Store, who: str) -> list[Check]:
    """A read, a write and a delete of a probe document under the reserved root."""
    path = f"{store.reserved_root}/doctor-probe-{uuid.uuid4().hex[:12]}"
    grant = f"grant {who} roles/datastore.user (reads and writes documents)"
    checks: list[Check] = []
    try:
        store.get(path)
    except FsMigrateError as exc:
        checks.append(
            Check(
                "read",
                FAIL,
                f"cannot read {path}: {exc}",
                f"{grant}; a dry-run needs roles/datastore.viewer at least",
            )
        )
    else:
        checks.append(Check("read", OK, f"read {path} (a dry-run reads like this)"))
    leases = Leases(store)
    try:
        written = leases.create(
            path, {"by": "fsmigrate doctor", "at": dt.datetime.now(dt.timezone.utc)}
        )
        back = store.get(path) if written is not None else None
    except FsMigrateError as exc:
        checks.append(
            Check(
                "write",
                FAIL,
                f"cannot write {path}: {exc}",
                f"{grant}: an apply writes its markers and lock there",
            )
        )
        checks.append(Check("delete", SKIP, "nothing was written to delete"))
        return checks
    if written is None or back is None:
        checks.append(
            Check(
                "write",
                FAIL,
                f"{path} was not created as asked (it existed, or reads back missing)",
                "run doctor again",
            )
        )
        return checks
    checks.append(Check("write", OK, f"created {path} with a precondition and read it back"))
    try:
        gone = leases.delete(path, written) and store.get(path) is None
    except FsMigrateError as exc:
        checks.append(
            Check(
                "delete",
                FAIL,
                f"cannot delete {path}: {exc}",
                f"{grant}; then delete {path} by hand",
            )
        )
        return checks
    if not gone:
        checks.append(
            Check(
                "delete",
                FAIL,
                f"{path} is still there after its delete",
                f"delete {path} by hand and run doctor again",
            )
        )
    else:
        checks.append(Check("delete", OK, f"deleted {path} with a precondition"))
    return checks


def _query_checks(
    store: Store, queries: Sequence[tuple[str, Source]], emulator: bool
) -> list[Check]:
    """Each declared query, sent with a limit of one."""
    checks = []
    for revision, source in queries:
        name = f"query of {revision}"
        what = _describe(source)
        docs = store.scan(source.collection, group=source.group, where=source.where, page_size=1)
        try:
            next(docs, None)
        except IndexMissing as exc:
            index = exc.index
            checks.append(
                Check(
                    name,
                    FAIL,
                    f"{what}: needs a composite index: "
                    + (index.describe() if index is not None else str(exc.exc)),
                    f"`{index.gcloud()}`, then wait until it is READY" if index else str(exc),
                )
            )
            continue
        except FsMigrateError as exc:
            checks.append(Check(name, FAIL, f"{what}: {exc}", "fix the script's `source`"))
            continue
        finally:
            getattr(docs, "close", lambda: None)()  # a generator: end its stream
        caveat = (
            " (by the emulator, which serves any query without an index: only the "
            "production database can tell whether it needs one)"
            if emulator
            else ""
        )
        checks.append(Check(name, OK, f"{what}: accepted{caveat}"))
    return checks


def _describe(source: Source) -> str:
    kind = "collection group" if source.group else "collection"
    where = " and ".join(f"{f} {op} {v!r}" for f, op, v in source.where)
    return f"{kind} {source.collection}" + (f" where {where}" if where else "")


def diagnose(
    target: Target,
    principal: Principal,
    store: Store,
    admin: Any = None,
    queries: Sequence[tuple[str, Source]] = (),
    endpoint: Optional[str] = None,
) -> DoctorReport:
    """Every check of `target` (admin: a FirestoreAdminClient, None on the emulator)."""
    who = principal.email or f"the {principal.kind}"
    answer = None if admin is None else read_database(admin, target.project, target.database)
    report = DoctorReport(target, principal, endpoint=endpoint)
    report.checks.extend(_database_checks(target, answer, who))
    if answer is not None and answer.info is None and answer.code == "NOT_FOUND":
        return report  # nothing else can work
    report.checks.extend(_probe_checks(store, who))
    report.checks.extend(_query_checks(store, queries, target.is_emulator))
    return report
