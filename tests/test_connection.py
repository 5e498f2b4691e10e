"""Connection settings in one place (fsmigrate/firestore/connection.py): the endpoint, the
credentials, the service account to impersonate and the quota project, from a flag, an
environment variable or the config file; the same credentials, endpoint, quota project
and user agent on both channels of a Store; the emulator path as it was."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.api_core.exceptions import MethodNotImplemented
from google.auth import credentials as ga_credentials
from google.auth import impersonated_credentials

from fsmigrate import __version__, api
from fsmigrate.cli import cli
from fsmigrate.errors import FirestoreError, UsageError
from fsmigrate.firestore.connection import (
    USER_AGENT,
    Channels,
    Connection,
    credentials,
    parse_endpoint,
)
from fsmigrate.firestore.store import Store, Target

CONNECTION_VARS = (
    "FSMIGRATE_ENDPOINT",
    "FSMIGRATE_CREDENTIALS",
    "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "FIRESTORE_EMULATOR_HOST",
)


@pytest.fixture
def no_connection_env(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    for var in CONNECTION_VARS:
        monkeypatch.delenv(var, raising=False)


# ---- the settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("firestore.example.com", "firestore.example.com:443"),
        ("10.0.0.5:8443", "10.0.0.5:8443"),
        ("[::1]", "[::1]:443"),
        ("[::1]:9000", "[::1]:9000"),
        (" psc.internal:443 ", "psc.internal:443"),
    ],
)
def test_an_endpoint_is_host_and_port(text: str, expected: str) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text", ["https://firestore.googleapis.com", "host:0", "host:99999", "host:x", "::1", ":443"]
)
def test_a_bad_endpoint_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="--endpoint") as caught:
        Connection(endpoint=text)
    assert "\n" not in str(caught.value)


TOML = """
project = "acme"
endpoint = "psc.internal:443"
credentials = "keys/ci.json"
impersonate-service-account = "migrator@acme.iam.gserviceaccount.com"
quota-project = "acme-billing"

[env.prod]
endpoint = "prod-psc.internal"
"""


def shown(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "fsmigrate.toml"), *args, "config", "--format", "json"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["settings"]


def test_each_setting_from_flag_then_variable_then_file(
    tmp_path: Path, no_connection_env: None
) -> None:
    (tmp_path / "fsmigrate.toml").write_text(textwrap.dedent(TOML))
    got = shown(tmp_path)
    assert got["endpoint"] == {
        "value": "psc.internal:443",
        "source": "fsmigrate.toml fsmigrate.toml",
    }
    # a path in the file is relative to the file
    assert got["credentials"]["value"] == str(tmp_path.resolve() / "keys/ci.json")
    assert got["impersonate-service-account"]["value"] == "migrator@acme.iam.gserviceaccount.com"
    assert got["quota-project"]["value"] == "acme-billing"
    # the environment's key beats the defaults
    assert shown(tmp_path, "--env", "prod")["endpoint"]["source"] == "fsmigrate.toml [env.prod]"
    # a variable beats the file; a flag beats the variable
    env = {
        "FSMIGRATE_ENDPOINT": "var.internal",
        "FSMIGRATE_CREDENTIALS": "/var/key.json",
        "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT": "var@acme.iam.gserviceaccount.com",
    }
    got = shown(tmp_path, env=env)
    assert got["endpoint"] == {"value": "var.internal", "source": "FSMIGRATE_ENDPOINT"}
    assert got["credentials"] == {"value": "/var/key.json", "source": "FSMIGRATE_CREDENTIALS"}
    assert got["impersonate-service-account"]["source"] == "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT"
    flags = (
        "--endpoint", "flag.internal:8443", "--credentials", "/flag/key.json",
        "--impersonate-service-account", "flag@acme.iam.gserviceaccount.com",
        "--quota-project", "flag-billing",
    )  # fmt: skip
    got = shown(tmp_path, *flags, env=env)
    assert got["endpoint"] == {"value": "flag.internal:8443", "source": "--endpoint"}
    assert got["credentials"] == {"value": "/flag/key.json", "source": "--credentials"}
    assert got["impersonate-service-account"]["source"] == "--impersonate-service-account"
    assert got["quota-project"] == {"value": "flag-billing", "source": "--quota-project"}


def test_the_ambient_quota_project_is_below_the_file(
    tmp_path: Path, no_connection_env: None
) -> None:
    (tmp_path / "fsmigrate.toml").write_text('project = "acme"\n')
    ambient = {"GOOGLE_CLOUD_QUOTA_PROJECT": "from-gcloud"}
    got = shown(tmp_path, env=ambient)
    assert got["quota-project"] == {"value": "from-gcloud", "source": "GOOGLE_CLOUD_QUOTA_PROJECT"}
    (tmp_path / "fsmigrate.toml").write_text('project = "acme"\nquota-project = "team"\n')
    assert shown(tmp_path, env=ambient)["quota-project"]["value"] == "team"
    assert shown(tmp_path)["endpoint"] == {"value": None, "source": "default"}


def test_a_bad_endpoint_in_the_file_names_the_file(tmp_path: Path, no_connection_env: None) -> None:
    (tmp_path / "fsmigrate.toml").write_text('endpoint = "https://x"\n')
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "fsmigrate.toml"), "config"])
    assert result.exit_code == 2
    assert "fsmigrate.toml: endpoint must be HOST[:PORT]" in result.stderr


def test_the_api_config_carries_the_connection(tmp_path: Path, no_connection_env: None) -> None:
    (tmp_path / "fsmigrate.toml").write_text(textwrap.dedent(TOML))
    cfg = api.Config.from_file(tmp_path / "fsmigrate.toml", environ={})
    assert cfg.connection == Connection(
        endpoint="psc.internal:443",
        credentials=str(tmp_path.resolve() / "keys/ci.json"),
        impersonate_service_account="migrator@acme.iam.gserviceaccount.com",
        quota_project="acme-billing",
    )
    # a hand-made config takes what it leaves unset from the environment variables
    by_hand = api.Config(project="p", connection=api.Connection(quota_project="q"))
    assert by_hand.connect() == Connection(quota_project="q")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FSMIGRATE_ENDPOINT", "env.internal")
        mp.setenv("GOOGLE_CLOUD_QUOTA_PROJECT", "ambient")
        assert by_hand.connect() == Connection(endpoint="env.internal:443", quota_project="q")
    # emulator_host and connection.emulator_host are one setting
    assert api.Config(emulator_host="127.0.0.1:1").connection.emulator_host == "127.0.0.1:1"
    with pytest.raises(UsageError, match="differ"):
        api.Config(emulator_host="127.0.0.1:1", connection=Connection(emulator_host="[::1]:2"))


def test_an_endpoint_with_the_emulator_is_a_usage_error(
    tmp_path: Path, no_connection_env: None
) -> None:
    env = {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"}
    args = ["--project", "p", "--state", str(tmp_path / "s.db"), "--endpoint", "psc.internal"]
    result = CliRunner().invoke(cli, [*args, "status"], env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "FAILED: --endpoint psc.internal:443 and FIRESTORE_EMULATOR_HOST=127.0.0.1:8080 are both set"
    )
    assert not (tmp_path / "s.db").exists()
    with pytest.raises(UsageError, match="are both set"):
        api.Config(
            project="p", connection=Connection(endpoint="x", emulator_host="[::1]:1")
        ).target()


def test_the_emulator_stays_on_loopback(no_connection_env: None) -> None:
    with pytest.raises(UsageError, match="not a loopback address"):
        Channels(Connection(emulator_host="10.1.2.3:8080"), "p", "(default)")


# ---- the credentials ---------------------------------------------------------------------


def write_user_key(path: Path) -> Path:
    """An `authorized_user` credentials file (what `gcloud auth application-default
    login` writes): loads without a network or a private key."""
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id.apps.googleusercontent.com",
                "client_secret": "secret",
                "refresh_token": "refresh",
            }
        )
    )
    return path


def test_a_credentials_file_impersonation_and_quota_project_are_built_once(
    tmp_path: Path, no_connection_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth

    def no_adc(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a credentials file was given: no ADC lookup")

    monkeypatch.setattr(google.auth, "default", no_adc)
    key = write_user_key(tmp_path / "user.json")
    found = credentials(Connection(credentials=str(key), quota_project="billing"))
    assert found.quota_project_id == "billing" and found.refresh_token == "refresh"
    acting = credentials(
        Connection(credentials=str(key), impersonate_service_account="sa@p.iam.gserviceaccount.com")
    )
    assert isinstance(acting, impersonated_credentials.Credentials)
    assert acting.service_account_email == "sa@p.iam.gserviceaccount.com"
    assert acting._source_credentials.refresh_token == "refresh"
    channels = Channels(Connection(credentials=str(key)), "p", "(default)")
    assert channels.credentials is channels.credentials  # built once
    assert credentials(Connection(emulator_host="127.0.0.1:1")) is None  # none for the emulator


def test_a_missing_credentials_file_is_one_line(tmp_path: Path, no_connection_env: None) -> None:
    missing = str(tmp_path / "missing.json")
    with pytest.raises(UsageError, match=r"missing.json \(--credentials\) does not exist$"):
        credentials(Connection(credentials=missing))
    with pytest.raises(UsageError, match="credentials file"):  # before anything connects
        Store(Target("p"), connection=Connection(credentials=missing))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError, match=r"credentials file .*bad.json \(--credentials\): "):
        credentials(Connection(credentials=str(tmp_path / "bad.json")))


# ---- both channels -------------------------------------------------------------------------


class Recorder(grpc.GenericRpcHandler):
    """A gRPC server's handler that records each call's method and metadata and answers
    UNIMPLEMENTED (the call's metadata is what is under test)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def service(self, details: Any) -> None:
        self.calls.append((details.method.rsplit("/", 1)[1], dict(details.invocation_metadata)))
        return None


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, grpc.Server, int, int]]:
    """A recording server on loopback: one plain-text port (an emulator's), one with gRPC's
    local credentials (what a channel's call credentials may be sent over, like TLS)."""
    handler = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[handler])
    plain = server.add_insecure_port("127.0.0.1:0")
    local = server.add_secure_port(
        "127.0.0.1:0", grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    )
    server.start()
    yield handler, server, plain, local
    server.stop(None)


class Explicit(ga_credentials.CredentialsWithQuotaProject):
    """Credentials a caller gives: a fixed token, counted refreshes and copies."""

    copies = 0

    def __init__(self, token: str = "explicit-token") -> None:
        super().__init__()
        self.fixed = token
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = self.fixed

    def with_quota_project(self, quota_project_id: str | None) -> Explicit:
        Explicit.copies += 1
        made = Explicit(self.fixed)
        made._quota_project_id = quota_project_id
        return made


def call_both(channels: Channels) -> None:
    """One call on each channel: the client's (a document read) and the fast one's (a
    batch read through a Store)."""
    with pytest.raises(MethodNotImplemented):
        channels.client.collection("c").document("d").get(retry=None, timeout=5)
    store = Store(Target(channels.project, channels.database), channels=channels)
    with pytest.raises(FirestoreError, match="MethodNotImplemented"):
        store.peek("c/d")


def test_given_credentials_endpoint_and_quota_project_reach_both_channels(
    recorder: Any, no_connection_env: None
) -> None:
    handler, _, _, port = recorder
    Explicit.copies = 0
    given = Explicit()
    connection = Connection(endpoint=f"localhost:{port}", quota_project="billing")
    channels = Channels(
        connection,
        "p",
        "db1",
        given_credentials=given,
        ssl_credentials=grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
    )
    try:
        call_both(channels)
        assert channels.opened == 2
    finally:
        channels.close()
    methods = [m for m, _ in handler.calls]
    assert methods == ["BatchGetDocuments", "BatchGetDocuments"], methods
    for _, metadata in handler.calls:
        assert metadata["authorization"] == "Bearer explicit-token"
        assert metadata["x-goog-user-project"] == "billing"
        assert metadata["google-cloud-resource-prefix"] == "projects/p/databases/db1"
        assert "database=projects/p/databases/db1" in metadata["x-goog-request-params"]
        assert metadata["user-agent"].startswith(f"fsmigrate/{__version__} ")
        assert metadata["x-goog-api-client"].startswith(f"fsmigrate/{__version__} ")
    # the quota project was set once on the credentials both channels share: one token
    shared = channels.credentials
    assert shared.quota_project_id == "billing" and shared.refreshes == 1
    assert Explicit.copies == 1  # no copy per channel


def test_the_emulator_path_is_plain_text_with_the_user_agent_on_both_channels(
    recorder: Any, no_connection_env: None
) -> None:
    handler, _, port, _ = recorder
    channels = Channels(Connection(emulator_host=f"127.0.0.1:{port}"), "p", "(default)")
    try:
        call_both(channels)
    finally:
        channels.close()
    assert [m for m, _ in handler.calls] == ["BatchGetDocuments", "BatchGetDocuments"]
    for _, metadata in handler.calls:
        assert metadata["authorization"] == "Bearer owner"  # as the client has always sent
        assert USER_AGENT in metadata["user-agent"]
        assert USER_AGENT in metadata["x-goog-api-client"]
        assert "x-goog-user-project" not in metadata
