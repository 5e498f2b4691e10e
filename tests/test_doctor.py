"""`fsmigrate doctor`'s checks (fsmigrate.engine.doctor) and the missing-index line.

The admin checks (GetDatabase) run against a fake admin service on loopback
(tests/prodfront.py's FakeAdmin, on a gRPC server of its own), the probe and the queries
against the real emulator; a missing index is Firestore's own refusal (FAILED_PRECONDITION
with its console link), answered by a gRPC proxy in front of the emulator, since the
emulator serves every query without one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.auth import credentials as ga_credentials
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.services.firestore_admin.transports import (
    FirestoreAdminGrpcTransport,
)
from google.cloud.firestore_admin_v1.types import Database
from google.protobuf import duration_pb2, timestamp_pb2

from fsmigrate.distributed import scan
from fsmigrate.engine.doctor import Principal, credentials_source, diagnose, principal_of
from fsmigrate.errors import IndexMissing
from fsmigrate.firestore.admin import admin_client, read_database
from fsmigrate.firestore.connection import USER_AGENT, Channels, Connection
from fsmigrate.firestore.indexes import index_link, needed_index
from fsmigrate.firestore.store import RetryPolicy, Store, Target
from fsmigrate.report import doctor as doctor_report
from grpcfaults import GrpcFaultProxy
from helpers import Fsm, seed_items, write_script
from prodfront import FakeAdmin
from tokenserver import TokenServer

FAST = RetryPolicy(patience=20, initial=0.05, maximum=0.5, timeout=5)
RUNNER = Principal("service account", "runner@p.iam.gserviceaccount.com", "key file k.json")


# ---- the index a refusal names ----------------------------------------------------------------


def test_the_index_is_read_from_firestores_link() -> None:
    link = index_link(
        "shop",
        "(default)",
        "orders",
        [("status", "ascending"), ("total", "descending"), ("__name__", "descending")],
    )
    message = f"The query requires an index. You can create it here: {link}"
    index = needed_index(message)
    assert index is not None
    assert (index.project, index.database, index.collection_group) == (
        "shop",
        "(default)",
        "orders",
    )
    assert index.describe() == (
        "orders (collection): status ascending, total descending, __name__ descending"
    )
    assert index.gcloud() == (
        "gcloud firestore indexes composite create --project=shop '--database=(default)' "
        "--collection-group=orders --query-scope=collection "
        "--field-config=field-path=status,order=ascending "
        "--field-config=field-path=total,order=descending"
    )
    assert index.link == link


def test_an_array_contains_index_of_a_named_database_and_group_scope() -> None:
    link = index_link(
        "p",
        "audit-db",
        "tags",
        [("labels", "array-contains"), ("at", "ascending")],
        scope="collection-group",
    )
    index = needed_index(f"The query requires an index. You can create it here: {link}")
    assert index is not None
    assert index.describe() == "tags (collection-group): labels array-contains, at ascending"
    assert "--database=audit-db" in index.gcloud()
    assert "--field-config=field-path=labels,array-config=contains" in index.gcloud()
    assert "--query-scope=collection-group" in index.gcloud()


@pytest.mark.parametrize(
    "message",
    [
        "The query requires an index.",  # no link
        "The query requires an index. You can create it here: https://x/indexes?create_composite=!!",
        "Document already exists",
    ],
)
def test_a_message_without_a_readable_index_gives_none(message: str) -> None:
    assert needed_index(message) is None


# ---- the principal ------------------------------------------------------------------------------


def test_the_principal_of_each_kind_of_credentials(tmp_path: Path) -> None:
    from google.auth import impersonated_credentials
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    key = TokenServer(port=1).service_account(tmp_path / "key.json", "p")
    sa = service_account.Credentials.from_service_account_file(str(key.path))
    assert principal_of(sa, "key file") == Principal("service account", key.email, "key file")
    acting = impersonated_credentials.Credentials(
        source_credentials=sa,
        target_principal="migrator@p.iam.gserviceaccount.com",
        target_scopes=["https://www.googleapis.com/auth/datastore"],
    )
    assert principal_of(acting) == Principal(
        "impersonated service account", "migrator@p.iam.gserviceaccount.com"
    )
    user = user_credentials.Credentials(token="t", account="ada@example.com")
    assert principal_of(user).describe() == "user ada@example.com"
    assert principal_of(user_credentials.Credentials(token="t")).describe() == "user"
    assert principal_of(None).kind == "no credentials"


def test_where_the_credentials_come_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = TokenServer(port=1).service_account(tmp_path / "key.json", "p")
    user = tmp_path / "adc.json"
    user.write_text('{"type": "authorized_user", "client_id": "x", "refresh_token": "y"}')
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    assert credentials_source(None) == "application default credentials"
    assert credentials_source(str(key.path)) == f"key file {key.path}"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user))
    assert credentials_source(None) == f"user credentials file {user}"
    assert credentials_source(str(key.path), impersonating=True) == (
        f"impersonated through key file {key.path}"
    )
    assert credentials_source(str(tmp_path / "gone.json")) == (
        f"credentials file {tmp_path / 'gone.json'}"
    )


# ---- the checks on the emulator -----------------------------------------------------------------


def _store(project: str, emulator, database: str = "(default)") -> Store:
    return Store(Target(project, database, emulator.host_port), policy=FAST)


def test_on_the_emulator_the_probe_runs_and_the_admin_checks_say_they_cannot(
    emulator, project_id: str, fs_client
) -> None:
    store = _store(project_id, emulator)
    seed_items(fs_client, 3)
    report = diagnose(
        store.target,
        principal_of(None),
        store,
        admin=None,
        queries=[("0002", scan("items", where=[("n", ">", 0)]))],
    )
    status = {c.name: c.status for c in report.checks}
    assert status == {
        "database": "skip",
        "point-in-time recovery": "skip",
        "delete protection": "skip",
        "read": "ok",
        "write": "ok",
        "delete": "ok",
        "query of 0002": "ok",
    }
    assert all("emulator has no admin API" in c.detail for c in report.checks[:3])
    assert "only the production database can tell" in report.checks[-1].detail
    assert report.ok
    # the probe left nothing behind, and touched nothing of the user's
    assert list(fs_client.collection("_fsmigrate").stream()) == []
    assert sorted(d.id for d in fs_client.collection("items").stream()) == [
        "i00000",
        "i00001",
        "i00002",
    ]


# ---- the admin checks against a fake admin service ----------------------------------------------


@pytest.fixture
def admin() -> Iterator[tuple[FakeAdmin, FirestoreAdminClient]]:
    fake = FakeAdmin()
    server, port = fake.serve()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    client = FirestoreAdminClient(transport=FirestoreAdminGrpcTransport(channel=channel))
    yield fake, client
    channel.close()
    server.stop(grace=None).wait()


class _Fixed(ga_credentials.CredentialsWithQuotaProject):
    """Credentials with a fixed token, counting their refreshes."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = "fixed-token"

    def with_quota_project(self, quota_project_id: str | None) -> _Fixed:
        made = _Fixed()
        made._quota_project_id = quota_project_id
        return made


def test_the_admin_channel_goes_where_the_stores_go_as_the_same_principal(
    project_id: str,
) -> None:
    """admin_client: the endpoint, the very credentials object (with its quota project),
    the TLS and the user agent of a Store's channels; its channel is closed on leaving."""
    fake = FakeAdmin()
    fake.add(project_id, "db1")
    local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    server, port = fake.serve(credentials=local)
    channels = Channels(
        Connection(endpoint=f"localhost:{port}", quota_project="billing"),
        project_id,
        "db1",
        given_credentials=_Fixed(),
        ssl_credentials=grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
    )
    try:
        with admin_client(channels) as client:
            answer = read_database(client, project_id, "db1")
        assert answer.info is not None and answer.info.native
        with pytest.raises(ValueError, match="closed channel"):
            client.get_database(name=f"projects/{project_id}/databases/db1", retry=None)
        assert channels.opened == 0  # the Store's channels were not needed
    finally:
        channels.close()
        server.stop(grace=None).wait()
    [metadata] = fake.metadata
    assert metadata["authorization"] == "Bearer fixed-token"
    assert metadata["x-goog-user-project"] == "billing"
    assert metadata["user-agent"].startswith(f"{USER_AGENT} ")
    assert metadata["x-goog-api-client"].startswith(f"{USER_AGENT} ")
    assert channels.credentials.refreshes == 1  # the one object, refreshed once


def test_the_emulator_has_no_admin_client() -> None:
    channels = Channels(Connection(emulator_host="127.0.0.1:8080"), "p", "(default)")
    with pytest.raises(ValueError, match="no admin API"), admin_client(channels):
        pass
    assert channels.opened == 0


def _cloud(project: str, database: str = "(default)") -> Target:
    """The target as on Google Cloud (the checks' wording); its reads go to the emulator."""
    return Target(project, database)


def test_a_well_kept_database_passes(admin, emulator, project_id: str) -> None:
    fake, client = admin
    earliest = timestamp_pb2.Timestamp()
    earliest.FromDatetime(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    db = fake.add(
        project_id,
        point_in_time_recovery_enablement=(
            Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
        ),
        delete_protection_state=Database.DeleteProtectionState.DELETE_PROTECTION_ENABLED,
        version_retention_period=duration_pb2.Duration(seconds=7 * 86400),
        earliest_version_time=earliest,
    )
    report = diagnose(_cloud(project_id), RUNNER, _store(project_id, emulator), admin=client)
    checks = {c.name: c for c in report.checks}
    assert [c.status for c in report.checks] == ["ok"] * 6
    assert checks["database"].detail == f"{db.name} exists, Firestore Native mode, in eur3"
    assert "reach back 7 days" in checks["point-in-time recovery"].detail
    assert (
        "oldest --as-of now: 2026-03-01T12:00:00+00:00" in checks["point-in-time recovery"].detail
    )
    assert fake.calls == [f"projects/{project_id}/databases/(default)"]
    text = doctor_report.text(report)
    assert "acting as: service account runner@p.iam.gserviceaccount.com (key file k.json)" in text
    assert text.rstrip().endswith("6 ok, 0 warn, 0 fail, 0 skip: ready")


def test_pitr_and_delete_protection_off_are_warnings_with_the_command(
    admin, emulator, project_id: str
) -> None:
    fake, client = admin
    fake.add(project_id, "orders-db")
    report = diagnose(
        _cloud(project_id, "orders-db"),
        RUNNER,
        _store(project_id, emulator, "orders-db"),
        admin=client,
    )
    checks = {c.name: c for c in report.checks}
    assert checks["point-in-time recovery"].status == "warn"
    assert "--as-of reaches back 1 hour only" in checks["point-in-time recovery"].detail
    update = f"gcloud firestore databases update --project={project_id} --database='orders-db'"
    assert checks["point-in-time recovery"].next_step == (
        f"to keep 7 days of versions: `{update} --enable-pitr`"
    )
    assert checks["delete protection"].status == "warn"
    assert checks["delete protection"].next_step == f"`{update} --delete-protection`"
    assert report.ok  # warnings do not fail
    out = doctor_report.as_json(report)
    assert (out["ok"], out["exit_code"], out["counts"]) == (
        True,
        0,
        {"ok": 4, "warn": 2, "fail": 0, "skip": 0},
    )
    assert json.loads(json.dumps(out))["principal"]["email"] == RUNNER.email


def test_a_datastore_mode_database_fails(admin, emulator, project_id: str) -> None:
    fake, client = admin
    fake.add(project_id, type_=Database.DatabaseType.DATASTORE_MODE)
    report = diagnose(_cloud(project_id), RUNNER, _store(project_id, emulator), admin=client)
    assert report.checks[0].status == "fail"
    assert "is in datastore mode; fsmigrate works on Firestore in Native mode" in (
        report.checks[0].detail
    )
    assert not report.ok
    out = doctor_report.as_json(report)
    assert (out["exit_code"], out["error"]) == (
        1,
        {"type": "DoctorFailed", "message": "1 failed: database"},
    )


def test_a_missing_database_fails_and_nothing_else_is_tried(
    admin, emulator, project_id: str, fs_client
) -> None:
    _, client = admin
    report = diagnose(
        _cloud(project_id, "nope"), RUNNER, _store(project_id, emulator), admin=client
    )
    assert [(c.name, c.status) for c in report.checks] == [
        ("database", "fail"),
        ("point-in-time recovery", "skip"),
        ("delete protection", "skip"),
    ]
    assert report.checks[0].detail == f"project {project_id} has no database nope"
    assert f"gcloud firestore databases list --project={project_id}" in report.checks[0].next_step


def test_without_admin_read_permission_the_settings_are_a_warning(
    admin, emulator, project_id: str
) -> None:
    fake, client = admin
    fake.denied = True
    report = diagnose(_cloud(project_id), RUNNER, _store(project_id, emulator), admin=client)
    status = [(c.name, c.status) for c in report.checks]
    assert status[:3] == [
        ("database", "warn"),
        ("point-in-time recovery", "skip"),
        ("delete protection", "skip"),
    ]
    assert report.checks[0].next_step.startswith(
        "grant runner@p.iam.gserviceaccount.com roles/datastore.viewer"
    )
    assert [s for _, s in status[3:]] == ["ok", "ok", "ok"]  # the probe still ran


# ---- a missing index ---------------------------------------------------------------------------


@pytest.fixture
def refusing(emulator, monkeypatch) -> Iterator[GrpcFaultProxy]:
    with GrpcFaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)
        yield proxy


def _index_refusal(project: str) -> str:
    link = index_link(
        project,
        "(default)",
        "items",
        [("kind", "ascending"), ("n", "ascending"), ("__name__", "ascending")],
    )
    return f"The query requires an index. You can create it here: {link}"


def test_doctor_names_the_index_a_declared_query_needs(
    refusing: GrpcFaultProxy, project_id: str
) -> None:
    refusing.fail_next(
        "RunQuery", grpc.StatusCode.FAILED_PRECONDITION, details=_index_refusal(project_id)
    )
    store = Store(Target(project_id, "(default)", refusing.host_port), policy=FAST)
    report = diagnose(
        store.target,
        RUNNER,
        store,
        queries=[("0003", scan("items", where=[("kind", "==", "a"), ("n", ">", 1)]))],
    )
    check = report.checks[-1]
    assert (check.name, check.status) == ("query of 0003", "fail")
    assert check.detail == (
        "collection items where kind == 'a' and n > 1: needs a composite index: "
        "items (collection): kind ascending, n ascending, __name__ ascending"
    )
    assert check.next_step.startswith(
        f"`gcloud firestore indexes composite create --project={project_id}"
    )
    assert not report.ok


SCRIPT = """
from fsmigrate.distributed import scan

source = scan("items", where=[("kind", "==", "a"), ("n", ">", 1)])

def each(ctx, doc):
    yield ctx.update(doc, {"seen": True})
"""


def test_a_missing_index_in_a_run_is_one_line_naming_it(
    refusing: GrpcFaultProxy, project_id: str, tmp_path: Path, fs_client
) -> None:
    seed_items(fs_client, 3, lambda i: {"kind": "a", "n": i})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, SCRIPT)
    # the run's first queries read the Beam journals' records and the markers; its third
    # is the script's scan
    refusing.fail_next(
        "RunQuery", grpc.StatusCode.FAILED_PRECONDITION, details=_index_refusal(project_id), after=2
    )
    result = fsm("upgrade", "--dry-run")
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 1, result.output
    assert failed[0].startswith("FAILED: scan of items: "), failed[0]
    assert (
        "the query needs a composite index the database does not have: items (collection): "
        "kind ascending, n ascending, __name__ ascending; create it with `gcloud firestore "
        "indexes composite create" in failed[0]
    )
    assert "--field-config=field-path=kind,order=ascending" in failed[0]


def test_an_index_still_building_says_to_wait() -> None:
    from google.api_core import exceptions as gexc

    link = index_link("p", "(default)", "items", [("a", "ascending"), ("b", "ascending")])
    exc = gexc.FailedPrecondition(
        "The query requires an index. That index is currently building and cannot be used "
        f"yet. See its status here: {link}"
    )
    error = IndexMissing("scan of items", exc, needed_index(str(exc)))
    assert str(error) == (
        "scan of items: the composite index the query needs is still building: items "
        "(collection): a ascending, b ascending; wait until `gcloud firestore indexes "
        "composite list` shows it READY, then run again"
    )


# ---- the command --------------------------------------------------------------------------------


def test_the_doctor_command_on_the_emulator(fsm: Fsm, fs_client) -> None:
    """Text and JSON; exit 0 when nothing fails; the state file is not created."""
    seed_items(fs_client, 2)
    write_script(fsm.migrations, "0001", None, SCRIPT)
    result = fsm("doctor")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0]
        == f"target:    project {fsm.project}, database (default) (emulator "
        + (lines[0].split("(emulator ")[1])
    )
    assert lines[1] == "acting as: no credentials (the emulator needs none)"
    assert any(line.startswith("skip  database") for line in lines)
    assert any(line.startswith("ok    query of 0001") for line in lines)
    assert lines[-1] == "4 ok, 0 warn, 0 fail, 3 skip: ready"
    out = fsm.json("doctor")
    assert (out["ok"], out["exit_code"], out["error"]) == (True, 0, None)
    assert out["counts"] == {"ok": 4, "warn": 0, "fail": 0, "skip": 3}
    assert [c["name"] for c in out["checks"]][-1] == "query of 0001"
    assert not fsm.state.exists()


def test_the_doctor_command_fails_on_a_missing_index(
    refusing: GrpcFaultProxy, project_id: str, tmp_path: Path
) -> None:
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, SCRIPT)
    # doctor's first query reads the markers; its second is the script's
    refusing.fail_next(
        "RunQuery", grpc.StatusCode.FAILED_PRECONDITION, details=_index_refusal(project_id), after=1
    )
    result = fsm("doctor", "--format", "json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["error"] == {"type": "DoctorFailed", "message": "1 failed: query of 0001"}
    failed = [c for c in out["checks"] if c["status"] == "fail"]
    assert failed[0]["next"].startswith("`gcloud firestore indexes composite create")
