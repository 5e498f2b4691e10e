"""The production path, on loopback: Firestore behind a TLS front that checks bearer tokens
(tests/prodfront.py), a token server named by a service-account key file
(tests/tokenserver.py), and the caller in a network namespace with only `lo`
(tests/netns.py) where the machine allows it.

First the test machinery itself (a client of the Firestore library through the front),
then fsmigrate's command line run as a user would run it.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.cloud.firestore_v1.types import Document, GetDocumentRequest

from fsmigrate.firestore.emulator import Emulator
from netns import Loopback
from prodfront import FakeAdmin, Pki, ProdFront, database_of
from tokenserver import ServiceAccountKey, TokenServer

pytestmark = pytest.mark.emulator


@dataclass
class Production:
    """The pieces of one production-like setup."""

    pki: Pki
    tokens: TokenServer
    front: ProdFront
    admin: FakeAdmin
    key: ServiceAccountKey
    project: str
    tmp: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a user's shell: the CA to trust, the key file, no emulator."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_QUOTA_PROJECT")
            and not k.startswith("FSMIGRATE_")
        }
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(self.pki.ca_path)
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.key.path)
        env["HOME"] = str(self.tmp / "home")  # no gcloud configuration of this machine
        env.update(extra)
        return env

    def net(self) -> Loopback:
        return Loopback([self.front.port, self.tokens.port], self.tmp)


def production(
    tmp_path: Path, emulator: Emulator, project: str, lifetime: float
) -> Iterator[Production]:
    (tmp_path / "home").mkdir()
    pki = Pki.make(tmp_path)
    admin = FakeAdmin()
    with TokenServer(lifetime=lifetime) as tokens:
        with ProdFront(emulator.host, emulator.port, pki, tokens, admin=admin) as front:
            key = tokens.service_account(tmp_path / "key.json", project)
            yield Production(pki, tokens, front, admin, key, project, tmp_path)


@pytest.fixture
def prod(tmp_path: Path, emulator: Emulator, project_id: str) -> Iterator[Production]:
    yield from production(tmp_path, emulator, project_id, lifetime=3600)


# ---- the machinery -----------------------------------------------------------------------

CLIENT = """
import sys
from google.cloud import firestore
project, endpoint = sys.argv[1], sys.argv[2]
client = firestore.Client(project=project, client_options={"api_endpoint": endpoint})
client.document("things/one").set({"n": 1})
print(client.document("things/one").get().to_dict()["n"])
print(len(list(client.collection("things").where("n", "==", 1).stream())))
"""


def test_a_client_library_reaches_the_emulator_through_the_front(prod: Production) -> None:
    """The Firestore library in a process of its own (inside a network namespace with only
    `lo` where allowed), with a key file and the CA, writes and reads through the front;
    each call carried a token of the key's service account, checked by the front."""
    with prod.net() as net:
        done = net.run(
            [sys.executable, "-c", CLIENT, prod.project, prod.front.endpoint], prod.env()
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
    calls = prod.front.calls
    assert {c.method for c in calls} >= {"Commit", "BatchGetDocuments", "RunQuery"}
    assert all(c.principal == prod.key.email for c in calls), [c.refused for c in calls]
    assert all(database_of(c) == f"projects/{prod.project}/databases/(default)" for c in calls), [
        c.metadata for c in calls
    ]


def _raw_get(front: ProdFront, pki: Pki, token: str | None) -> grpc.RpcError:
    """A GetDocument through the front with `token` as the bearer token: its error."""
    roots = pki.ca_path.read_bytes()
    with grpc.secure_channel(front.endpoint, grpc.ssl_channel_credentials(roots)) as channel:
        call = channel.unary_unary(
            "/google.firestore.v1.Firestore/GetDocument",
            request_serializer=GetDocumentRequest.serialize,
            response_deserializer=Document.deserialize,
        )
        metadata = [("authorization", f"Bearer {token}")] if token else []
        with pytest.raises(grpc.RpcError) as info:
            call(
                GetDocumentRequest(name="projects/p/databases/(default)/documents/a/b"),
                metadata=metadata,
                timeout=10,
            )
    return info.value


def _grant(tokens: TokenServer, key: ServiceAccountKey) -> str:
    """A token from the server, as google-auth asks for one with the key file."""
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(
        str(key.path), scopes=["https://www.googleapis.com/auth/datastore"]
    )
    creds.refresh(Request())
    return creds.token


def test_the_front_refuses_a_call_without_a_valid_token(
    tmp_path: Path, emulator: Emulator, project_id: str
) -> None:
    """UNAUTHENTICATED, not forwarded: no token, an unknown one, a JWT signed by a key the
    server does not know, and a token past its lifetime; a fresh token is forwarded (the
    emulator's NOT_FOUND comes back)."""
    gen = production(tmp_path, emulator, project_id, lifetime=1.0)
    prod = next(gen)
    try:
        other = TokenServer(port=prod.tokens.port)  # knows a key prod.tokens does not
        forged = other.service_account(tmp_path / "other.json", project_id, name="intruder")
        from google.auth import crypt, jwt

        signer = crypt.RSASigner.from_service_account_file(str(forged.path))
        now = int(time.time())
        forged_jwt = jwt.encode(
            signer,
            {
                "iss": forged.email,
                "sub": forged.email,
                "aud": "https://firestore.googleapis.com/",
                "iat": now,
                "exp": now + 600,
            },
        ).decode()
        for token, why in (
            (None, "no bearer token"),
            ("ya29.made-up", "unknown access token"),
            (forged_jwt, "unknown issuer"),
        ):
            error = _raw_get(prod.front, prod.pki, token)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (token, error)
            assert why in error.details()
        token = _grant(prod.tokens, prod.key)
        assert _raw_get(prod.front, prod.pki, token).code() == grpc.StatusCode.NOT_FOUND
        time.sleep(1.2)
        error = _raw_get(prod.front, prod.pki, token)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in error.details()
        assert [c.principal for c in prod.front.calls] == [None, None, None, prod.key.email, None]
    finally:
        gen.close()


def test_the_token_server_checks_the_assertion(prod: Production) -> None:
    """A grant signed by the key file's key is answered with a token that expires; one
    whose signature does not match (another key, same email) is refused."""
    token = _grant(prod.tokens, prod.key)
    assert prod.tokens.check(f"Bearer {token}") == prod.key.email
    genuine = json.loads(prod.key.path.read_text())
    impostor = TokenServer(port=prod.tokens.port).service_account(prod.tmp / "i.json", prod.project)
    forged = json.loads(impostor.path.read_text())
    forged["client_email"] = genuine["client_email"]
    (prod.tmp / "forged.json").write_text(json.dumps(forged))
    from google.auth.exceptions import RefreshError

    with pytest.raises(RefreshError, match="invalid_grant"):
        _grant(prod.tokens, ServiceAccountKey(prod.tmp / "forged.json", "", "", b""))
    assert prod.tokens.grants == 1
    assert "JWT refused" in prod.tokens.refused_grants[0]


def test_the_network_namespace_has_only_loopback(prod: Production) -> None:
    """Inside the namespace the test's ports answer and nothing else is routed (where
    the machine allows a namespace; skipped otherwise, with the reason)."""
    probe = textwrap.dedent(
        """
        import socket, sys
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        names = sorted(n for _, n in socket.if_nameindex())
        print(",".join(names))
        """
    )
    with prod.net() as net:
        if not net.isolated:
            pytest.skip("this machine does not allow a network namespace (unshare --net)")
        done = net.run([sys.executable, "-c", probe, str(prod.front.port)], prod.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lo"


# ---- fsmigrate's command line through the front ------------------------------------------------

MIGRATION = '''"""Mark the items, delete every third."""
from fsmigrate.distributed import scan

revision = "0001"
down_revision = None
source = scan("items")


def each(ctx, doc):
    if doc.get("n") % 3 == 0:
        yield ctx.delete(doc)
    else:
        yield ctx.update(doc, {"touched": True})
'''
N = 24


@dataclass
class Workspace:
    """A user's directory: migrations, a state file, and the database it targets."""

    prod: Production
    database: str
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.db"

    def argv(self, *args: str, quota: str | None = None) -> list[str]:
        extra = ["--quota-project", quota] if quota else []
        return [
            sys.executable,
            "-m",
            "fsmigrate",
            "--endpoint",
            self.prod.front.endpoint,
            "--project",
            self.prod.project,
            "--database",
            self.database,
            "--state",
            str(self.state),
            "--migrations",
            str(self.root / "migrations"),
            "--patience",  # a call that cannot get through fails the test in a minute
            "60s",
            *extra,
            *args,
        ]

    def run(self, *args: str, quota: str | None = None, **env: str):
        """The command, as a user runs it (inside the namespace where allowed); the calls
        the front received for it."""
        before = len(self.prod.front.calls)
        with self.prod.net() as net:
            done = net.run(self.argv(*args, quota=quota), self.prod.env(**env))
        assert done.returncode == 0, done.stdout + done.stderr
        return done, self.prod.front.calls[before:]


def _seed(emulator: Emulator, project: str, database: str) -> None:
    from google.cloud import firestore

    client = firestore.Client(project=project, database=database)
    try:
        batch = client.batch()
        for i in range(N):
            batch.set(client.document(f"items/i{i:03d}"), {"n": i})
        batch.commit()
    finally:
        client.close()


def _items(project: str, database: str) -> dict[str, dict]:
    from google.cloud import firestore

    client = firestore.Client(project=project, database=database)
    try:
        return {s.id: s.to_dict() for s in client.collection("items").stream()}
    finally:
        client.close()


@pytest.fixture
def workspace(prod: Production, emulator: Emulator, request: pytest.FixtureRequest) -> Workspace:
    database = getattr(request, "param", "(default)")
    root = prod.tmp / "work"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / "0001_mark.py").write_text(MIGRATION)
    _seed(emulator, prod.project, database)
    return Workspace(prod, database, root)


def _assert_every_call_carried(calls, prod: Production, database: str, quota: str | None) -> None:
    from fsmigrate import __version__

    assert calls, "no call reached the front"
    wanted = f"projects/{prod.project}/databases/{database}"
    problems = []
    for call in calls:
        if call.principal != prod.key.email:
            problems.append(f"{call.method}: token refused ({call.refused})")
        if call.service == "firestore" and database_of(call) != wanted:
            problems.append(
                f"{call.method}: routing {call.metadata.get('x-goog-request-params')!r}"
            )
        if f"fsmigrate/{__version__}" not in call.user_agents:
            problems.append(f"{call.method}: user agent {call.user_agents!r}")
        if quota is not None and call.metadata.get("x-goog-user-project") != quota:
            problems.append(
                f"{call.method}: quota project {call.metadata.get('x-goog-user-project')!r}"
            )
    assert problems == [], "\n".join(problems[:20])


def _assert_applied_once(ws: Workspace) -> None:
    """The documents are as the migration leaves them, and the state file recorded each
    operation exactly once (its audit and the documents agree)."""
    from helpers import ops_of

    items = _items(ws.prod.project, ws.database)
    assert sorted(items) == [f"i{i:03d}" for i in range(N) if i % 3]
    assert all(doc == {"n": int(name[1:]), "touched": True} for name, doc in items.items())
    ops = ops_of(ws.state, status="committed")
    paths = [op["path"] for op in ops]
    assert sorted(paths) == [f"items/i{i:03d}" for i in range(N)], "each document once"
    deleted = {op["path"].split("/")[1] for op in ops if op["kind"] == "delete"}
    assert deleted == {f"i{i:03d}" for i in range(N) if i % 3 == 0}


@pytest.mark.parametrize("workspace", ["(default)", "prod-db"], indirect=True)
def test_a_dry_run_and_an_apply_through_the_front(workspace: Workspace) -> None:
    """Every call of a dry-run and of an apply carried a valid token of the key file's
    service account, the target database in its routing header and fsmigrate's user
    agent; the apply did what was planned."""
    ws = workspace
    quota = "billing-proj" if ws.database != "(default)" else None
    _, calls = ws.run("upgrade", "--dry-run", quota=quota)
    assert {"RunQuery"} <= {c.method for c in calls}
    _assert_every_call_carried(calls, ws.prod, ws.database, quota)
    assert len(_items(ws.prod.project, ws.database)) == N  # a dry-run writes nothing
    _, calls = ws.run("upgrade", "--yes", quota=quota)
    assert "Commit" in {c.method for c in calls}
    _assert_every_call_carried(calls, ws.prod, ws.database, quota)
    _assert_applied_once(ws)


@pytest.mark.parametrize(
    ("stripped", "named"),
    [
        (("authorization",), "token refused (no bearer token"),
        (("x-goog-request-params",), "routing None"),
        (("user-agent", "x-goog-api-client"), "user agent ' '"),
        (("x-goog-user-project",), "quota project None"),
    ],
    ids=["token", "routing header", "user agent", "quota project"],
)
@pytest.mark.parametrize("workspace", ["prod-db"], indirect=True)
def test_the_checks_fail_when_a_call_lacks_a_header(
    workspace: Workspace, stripped: tuple[str, ...], named: str
) -> None:
    """The checks above are not vacuous: with a front that drops a header from every call
    as it arrives (as if fsmigrate had not sent it), they fail, naming what is missing.
    Without its token a call is refused, so the command itself fails too."""
    ws = workspace
    ws.prod.front.strip = frozenset(stripped)
    with ws.prod.net() as net:
        done = net.run(ws.argv("upgrade", "--dry-run", quota="billing-proj"), ws.prod.env())
    calls = ws.prod.front.calls
    assert calls, done.stderr
    if "authorization" in stripped:
        assert done.returncode != 0
        assert done.stderr.startswith("FAILED: ") and "no bearer token" in done.stderr
    else:
        assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(AssertionError) as failed:
        _assert_every_call_carried(calls, ws.prod, ws.database, "billing-proj")
    assert f"{calls[0].method}: {named}" in str(failed.value)


@pytest.mark.long
@pytest.mark.parametrize("workspace", ["prod-db"], indirect=True)
def test_a_beam_run_with_two_workers_through_the_front(workspace: Workspace) -> None:
    """The Beam runner's launcher and its two worker processes: every call of the dry-run
    and of the apply carried the token, the named database, the quota project and the
    user agent (the workers got the endpoint and the quota project from the launcher; each
    found its own credentials in its environment)."""
    ws = workspace
    beam = ("--runner", "beam", "--workers", "2")
    _, calls = ws.run("upgrade", "--dry-run", *beam, quota="billing-proj")
    _assert_every_call_carried(calls, ws.prod, ws.database, "billing-proj")
    _, calls = ws.run("upgrade", "--yes", *beam, quota="billing-proj")
    assert "Commit" in {c.method for c in calls}
    _assert_every_call_carried(calls, ws.prod, ws.database, "billing-proj")
    _assert_applied_once(ws)


@pytest.fixture
def short_tokens(tmp_path: Path, emulator: Emulator, project_id: str) -> Iterator[Production]:
    yield from production(tmp_path, emulator, project_id, lifetime=2.0)


def test_a_run_outlives_its_tokens(short_tokens: Production, emulator: Emulator) -> None:
    """Tokens that expire after 2 seconds (the front refuses an expired one): an apply
    held to a few operations a second lasts several lifetimes, takes fresh tokens as it
    goes, and applies each operation exactly once."""
    prod = short_tokens
    root = prod.tmp / "work"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / "0001_mark.py").write_text(MIGRATION)
    _seed(emulator, prod.project, "(default)")
    ws = Workspace(prod, "(default)", root)
    started = time.monotonic()
    _, calls = ws.run("upgrade", "--yes", "--batch-size", "2", "--max-rate", "4", "--no-ramp")
    took = time.monotonic() - started
    assert took > 3 * prod.tokens.lifetime, f"the run took {took:.1f} s: too short to tell"
    assert prod.front.refused() == []
    _assert_every_call_carried(calls, prod, "(default)", None)
    tokens = {c.metadata["authorization"] for c in calls}
    assert len(tokens) >= 3, "the run kept one token past its lifetime"
    assert prod.tokens.grants >= 3
    _assert_applied_once(ws)


def test_doctor_names_the_key_files_service_account(prod: Production) -> None:
    """`fsmigrate doctor` through the front: the principal is the key file's service
    account, the database's settings come from the admin API (answered by the front's
    fake admin service), and the probe's read, write and delete pass."""
    from google.cloud.firestore_admin_v1.types import Database

    prod.admin.add(
        prod.project,
        point_in_time_recovery_enablement=(
            Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
        ),
    )
    root = prod.tmp / "work"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / "0001_mark.py").write_text(MIGRATION)
    ws = Workspace(prod, "(default)", root)
    done, calls = ws.run("doctor", "--format", "json")
    out = json.loads(done.stdout)
    assert out["principal"] == {
        "kind": "service account",
        "email": prod.key.email,
        "source": f"key file {prod.key.path}",
    }
    status = {c["name"]: c["status"] for c in out["checks"]}
    assert status == {
        "database": "ok",
        "point-in-time recovery": "ok",
        "delete protection": "warn",
        "read": "ok",
        "write": "ok",
        "delete": "ok",
        "query of 0001": "ok",
    }
    assert out["endpoint"] == prod.front.endpoint
    assert "GetDatabase" in {c.method for c in calls}
    _assert_every_call_carried(calls, prod, "(default)", None)
