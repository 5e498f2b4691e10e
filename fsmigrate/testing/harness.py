"""The `fsmigrate` fixture: a test bench for a team's migrations on the Firestore emulator.

One harness is one project of its own on the (shared) emulator, a temporary state file
and the migrations directory under test. It runs the migrations through `fsmigrate.api`,
exactly as the command line does, and refuses (with the file and line) any write a
migration makes through the Firestore client instead of yielding it to ctx.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from fsmigrate import api
from fsmigrate.checks import CheckResult
from fsmigrate.errors import UsageError
from fsmigrate.firestore.emulator import check_loopback
from fsmigrate.scripts import loader as scripts
from fsmigrate.testing.guard import ClientWrites

Seed = Union[Mapping[str, Mapping[str, Mapping[str, Any]]], Callable[["Harness"], Any]]
Operation = tuple[str, str]  # (kind, path)
SEED_BATCH = 500


def new_project_id() -> str:
    """A project id of its own for one harness on a shared emulator."""
    return "fsmigrate-test-" + uuid.uuid4().hex[:10]


def emulator_host() -> str:
    host_port = os.environ.get("FIRESTORE_EMULATOR_HOST", "")
    if not host_port:
        raise UsageError(
            "FIRESTORE_EMULATOR_HOST is not set: the fsmigrate harness only "
            "runs against the emulator (request the firestore_emulator fixture)"
        )
    check_loopback(host_port.rpartition(":")[0].strip("[]") or host_port)
    return host_port


class Harness:
    """Migrations under test, on one fresh project of the emulator.

    - `seed(collection, {doc_id: data})`, `seed_all(seed)`, `docs(collection)`,
      `snapshot()`, `client` (a google.cloud.firestore.Client on the project);
    - `upgrade(options=None, dry_run=False, to=None)`, `rerun(revision, options=None,
      dry_run=False)`: the API's `UpgradeResult` (its `runs`: `RunResult`s; `options`:
      an `api.RunOptions`);
    - `plan(revision)`: the (kind, path) operations of a dry-run of that revision;
    - `operations(run_id)`: a run's (kind, path, status) operations;
    - `check(name, **options)`: a health check's `CheckResult`;
    - `chain()`: the loaded scripts, base first.
    """

    def __init__(
        self,
        migrations: Union[str, Path],
        workdir: Union[str, Path],
        project: Optional[str] = None,
        database: Optional[str] = None,
    ) -> None:
        self.emulator_host = emulator_host()
        self.project = project or new_project_id()
        self.database = database or "(default)"
        self.migrations = Path(migrations).resolve()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.state = workdir / "state.db"
        self.config = api.Config(
            project=self.project,
            database=self.database,
            state=self.state,
            migrations=self.migrations,
        )
        self.client_writes = ClientWrites(self.migrations)
        self._client: Any = None
        self._results: dict[str, api.UpgradeResult] = {}  # run id -> the result that ran it

    def __repr__(self) -> str:
        return (
            f"Harness(project={self.project!r}, database={self.database!r}, "
            f"migrations='{self.migrations}')"
        )

    @property
    def client(self) -> Any:
        """A google.cloud.firestore.Client on this harness's project and database (for
        seeding and reading in tests; migrations never get it)."""
        if self._client is None:
            from google.cloud import firestore

            self._client = firestore.Client(project=self.project, database=self.database)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for state in {id(r.state): r.state for r in self._results.values()}.values():
            state.close()
        self._results.clear()
        api.close()  # the channels its commands opened

    # ---- data ----------------------------------------------------------------------------

    def seed(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> int:
        """Write `{doc_id: data}` into `collection` (a path: `users/u1/sessions` works);
        the number of documents written."""
        ref = self.client.collection(collection)
        batch, pending, count = self.client.batch(), 0, 0
        for doc_id, data in docs.items():
            batch.set(ref.document(doc_id), dict(data))
            pending += 1
            count += 1
            if pending == SEED_BATCH:
                batch.commit()
                batch, pending = self.client.batch(), 0
        if pending:
            batch.commit()
        return count

    def seed_all(self, seed: Optional[Seed]) -> None:
        """Seed `{collection: {doc_id: data}}`, or call `seed(harness)`."""
        if seed is None:
            return
        if callable(seed):
            seed(self)
            return
        for collection, docs in seed.items():
            self.seed(collection, docs)

    def docs(self, collection: str) -> dict[str, dict[str, Any]]:
        """`{doc_id: data}` of the documents of `collection` now."""
        return {snap.id: snap.to_dict() for snap in self.client.collection(collection).stream()}

    def snapshot(self) -> dict[str, str]:
        """`{document path: update time}` of every document of the project, subcollections
        and fsmigrate's own documents included: equal snapshots mean nothing was written."""
        found: dict[str, str] = {}
        for collection in self.client.collections():
            for snap in collection.recursive().stream():
                found[snap.reference.path] = _stamp(snap.update_time)
        return found

    # ---- running ----------------------------------------------------------------------------

    def chain(self) -> scripts.Chain:
        return scripts.load_chain(self.migrations)

    def upgrade(
        self,
        options: Optional[api.RunOptions] = None,
        *,
        dry_run: bool = False,
        to: Optional[str] = None,
    ) -> api.UpgradeResult:
        """`fsmigrate upgrade [--dry-run] [--to REV]` on this project (`options`: the
        run options, e.g. `api.RunOptions(batch_size=10)`)."""
        with self.client_writes.forbidden():
            return self._keep(api.upgrade(self.config, options, dry_run=dry_run, to=to))

    def rerun(
        self, revision: str, options: Optional[api.RunOptions] = None, *, dry_run: bool = False
    ) -> api.UpgradeResult:
        """`fsmigrate rerun REV [--dry-run]` (a `repeatable = True` migration)."""
        with self.client_writes.forbidden():
            return self._keep(api.rerun(self.config, revision, options, dry_run=dry_run))

    def _keep(self, result: api.UpgradeResult) -> api.UpgradeResult:
        """Keep the result (and its open state file) to read its runs' operations: a
        dry-run's are not kept in the state file."""
        for run_id in result.run_ids:
            self._results[run_id] = result
        return result

    def plan(self, revision: str) -> list[Operation]:
        """The (kind, path) operations a dry-run of `revision` plans now: a pending revision
        whose predecessors are applied, or an applied repeatable one (planned as a rerun)."""
        script = self.chain().get(revision)
        rows = api.status(self.config, local=True).revisions
        pending = [r.revision for r in rows if r.state == "pending"]
        if revision not in pending:
            if not script.repeatable:
                raise UsageError(
                    f"revision {revision} is already applied and not "
                    "repeatable: there is nothing to plan"
                )
            result = self.rerun(revision, dry_run=True)
        else:
            before = pending[: pending.index(revision)]
            if before:
                raise UsageError(
                    f"revision(s) {', '.join(before)} come before {revision} and "
                    f"are not applied; apply them first: upgrade(to="
                    f"{before[-1]!r})"
                )
            result = self.upgrade(dry_run=True, to=revision)
        run = next(r for r in result.runs if r.revision == revision)
        return [(op.kind, op.path) for op in self.operations(run.run_id)]

    def operations(self, run_id: str) -> list[api.RunOperation]:
        """A run's operations in order: (kind, path, status)."""
        if run_id in self._results:
            return list(self._results[run_id].operations(run_id))
        found = api.audit(self.config, run_id)
        assert isinstance(found, api.RunAudit)
        try:
            return list(found.operations())
        finally:
            found.state.close()

    def check(self, name: str, **options: Any) -> CheckResult:
        """Run the health check `name` on this project."""
        return api.check(self.config, name, **options)


def _stamp(value: Any) -> str:
    """An update time as text, whatever form the client returns it in."""
    if isinstance(value, dt.datetime):
        rfc = getattr(value, "rfc3339", None)
        return rfc() if callable(rfc) else value.isoformat()
    to_json = getattr(value, "ToJsonString", None)
    return to_json() if callable(to_json) else str(value)


def describe_ops(ops: Iterable[Any], limit: int = 10) -> str:
    """'delete a/b, update a/c, ... (and 3 more)' for messages."""
    ops = list(ops)
    shown = ", ".join(" ".join(str(part) for part in op) for op in ops[:limit])
    return shown + (f" (and {len(ops) - limit} more)" if len(ops) > limit else "")
