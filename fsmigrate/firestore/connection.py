"""How fsmigrate reaches Firestore, in one place: the endpoint, the identity, the quota
project and the user agent of every channel.

A `Connection` holds the settings (each from a flag, an environment variable or the
config file: `fsmigrate config` shows which): the endpoint (`--endpoint HOST[:PORT]`,
e.g. a Private Service Connect endpoint or a proxy; default `firestore.googleapis.com`),
a credentials file (`--credentials`; without one, the application default credentials:
`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, the metadata server's), a service account to
impersonate (`--impersonate-service-account`, as gcloud names it), the quota project
(`--quota-project`, `GOOGLE_CLOUD_QUOTA_PROJECT`), or the emulator (plain text, loopback
only).

`Channels` opens what a Store talks through: the Firestore client's channel and
fsmigrate's fast channel (channel.py). `credentials(connection)` builds the credentials
once; both channels get that same object, the same endpoint and quota project, and
`fsmigrate/VERSION` in their `user-agent` and `x-goog-api-client` headers, so a team finds
its traffic in Cloud Monitoring and the audit logs. `close()` closes both.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import google.auth
import grpc
from google.api_core.gapic_v1.client_info import ClientInfo
from google.auth import exceptions as gauth_exceptions
from google.auth import impersonated_credentials
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

from fsmigrate import __version__
from fsmigrate.errors import UsageError
from fsmigrate.firestore.channel import KEEPALIVE, OPTIONS
from fsmigrate.firestore.emulator import check_emulator_host, check_loopback

USER_AGENT = f"fsmigrate/{__version__}"
CLIENT_INFO = ClientInfo(user_agent=USER_AGENT)
DEFAULT_ENDPOINT = FirestoreClient.DEFAULT_ENDPOINT
SCOPES = tuple(FirestoreGrpcTransport.AUTH_SCOPES)
EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"
# each setting's environment variable (the config file's keys: config.KEYS)
ENVIRON = {
    "endpoint": "FSMIGRATE_ENDPOINT",
    "credentials": "FSMIGRATE_CREDENTIALS",
    "impersonate_service_account": "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT",
    "quota_project": "GOOGLE_CLOUD_QUOTA_PROJECT",
    "emulator_host": EMULATOR_ENV,
}
# as the Firestore client's own channels: no client-side message size limit
_SIZES = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
_AGENT = [("grpc.primary_user_agent", USER_AGENT)]


@dataclass(frozen=True)
class Connection:
    """Where and as whom to connect. None: not set (the default endpoint, the application
    default credentials, no impersonation, the credentials' own quota project, not the
    emulator). `credentials` is a credentials file's path: a worker of a Beam run gets it
    only on this machine (`for_workers`); elsewhere it finds its own credentials.

    Args:
        endpoint: The Firestore endpoint, `HOST[:PORT]`: a Private Service Connect
            endpoint, a proxy.
        credentials: A credentials file's path.
        impersonate_service_account: The email of a service account to impersonate.
        quota_project: The project billed for the quota.
        emulator_host: The emulator's `host:port`, on loopback.
    """

    endpoint: Optional[str] = None  # HOST[:PORT] (port 443 when not given)
    credentials: Optional[str] = None  # a credentials file: a service account key...
    impersonate_service_account: Optional[str] = None  # its email
    quota_project: Optional[str] = None  # the project billed and whose quota is used
    emulator_host: Optional[str] = None  # HOST:PORT on loopback

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{_flag(f.name)} must be a non-empty text, got {value!r}")
            object.__setattr__(self, f.name, value.strip())
        if self.endpoint is not None:
            object.__setattr__(self, "endpoint", parse_endpoint(self.endpoint))

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> Connection:
        """The settings the environment variables give (ENVIRON)."""
        env = os.environ if environ is None else environ
        return cls(**{name: env.get(var) or None for name, var in ENVIRON.items()})

    def over(self, base: Connection) -> Connection:
        """These settings where they say something, else `base`'s."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{k: v for k, v in given.items() if v is not None})

    def check(self) -> Connection:
        """Refuse (UsageError, exit 2) what cannot connect: an emulator that is not on
        loopback, or an endpoint with the emulator (which one was meant?)."""
        check_emulator_host(self.emulator_host)
        if self.endpoint and self.emulator_host:
            raise UsageError(
                f"--endpoint {self.endpoint} and FIRESTORE_EMULATOR_HOST={self.emulator_host} "
                "are both set: unset FIRESTORE_EMULATOR_HOST to reach the endpoint, or drop "
                "--endpoint (FSMIGRATE_ENDPOINT, endpoint) to use the emulator"
            )
        return self

    @property
    def is_emulator(self) -> bool:
        return bool(self.emulator_host)

    @property
    def host(self) -> str:
        """Where both channels go: the emulator, the endpoint, or Google's."""
        if self.emulator_host:
            return self.emulator_host
        return self.endpoint or f"{DEFAULT_ENDPOINT}:443"

    def for_workers(self, *, same_machine: bool = False) -> Connection:
        """What a Beam worker gets: everything but the credentials file (each worker
        finds its own credentials where it runs; on Dataflow, the worker service
        account's). Workers on this machine (the DirectRunner's processes) get the
        file's absolute path, so they act as the command does."""
        if same_machine and self.credentials is not None:
            return replace(self, credentials=os.path.abspath(os.path.expanduser(self.credentials)))
        return replace(self, credentials=None)

    def describe(self) -> str:
        parts = [self.host]
        if self.impersonate_service_account:
            parts.append(f"as {self.impersonate_service_account}")
        if self.quota_project:
            parts.append(f"quota project {self.quota_project}")
        return ", ".join(parts)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_endpoint(text: str) -> str:
    """`HOST[:PORT]` (an IPv6 host in brackets) as `host:port`, port 443 when not given;
    UsageError for anything else (a URL, a path, a bad port)."""
    value = text.strip()
    if "://" in value or "/" in value or not value:
        raise UsageError(f"--endpoint {text!r} must be HOST[:PORT], e.g. firestore.example.com")
    if value.startswith("["):  # [::1]:443 or [::1]
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "?")
        host = f"[{host}]"
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    elif ":" in value:
        raise UsageError(f"--endpoint {text!r}: put an IPv6 address in brackets, [::1]:443")
    else:
        host, port = value, ""
    if host in ("", "[]") or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise UsageError(f"--endpoint {text!r} must be HOST[:PORT] with a port from 1 to 65535")
    return f"{host}:{port or 443}"


def credentials(connection: Connection, project: Optional[str] = None) -> Optional[Any]:
    """The credentials both channels use, built once per `Channels`: None for the
    emulator; else the credentials file's (`credentials`), or the application default
    credentials; impersonating `impersonate_service_account` when set (google-auth's
    impersonated credentials: the source credentials need the Service Account Token
    Creator role on it); with the quota project, when set. A missing or bad credentials
    file, or no credentials at all, is a UsageError (exit 2) of one line."""
    if connection.is_emulator:
        return None
    quota = connection.quota_project
    if connection.credentials and not os.path.isfile(connection.credentials):
        raise UsageError(
            f"credentials file {connection.credentials} (--credentials) does not exist"
        )
    try:
        if connection.credentials:
            with warnings.catch_warnings():  # the operator's own file, named on purpose
                warnings.simplefilter("ignore", DeprecationWarning)
                found, _ = google.auth.load_credentials_from_file(
                    connection.credentials, scopes=SCOPES, quota_project_id=quota
                )
        else:
            found, _ = google.auth.default(scopes=SCOPES, quota_project_id=quota)
    except gauth_exceptions.DefaultCredentialsError as exc:
        if connection.credentials:
            raise UsageError(
                f"credentials file {connection.credentials} (--credentials): {exc}"
            ) from None
        where = f" for project {project}" if project else ""
        raise UsageError(
            f"no Google credentials{where}: run `gcloud auth application-default login`, pass "
            "--credentials FILE (or FSMIGRATE_CREDENTIALS, GOOGLE_APPLICATION_CREDENTIALS), "
            "or set FIRESTORE_EMULATOR_HOST to use the emulator"
        ) from None
    if connection.impersonate_service_account:
        found = impersonated_credentials.Credentials(
            source_credentials=found,
            target_principal=connection.impersonate_service_account,
            target_scopes=list(SCOPES),
        )
    return with_quota_project(found, quota)


def with_quota_project(found: Any, quota: Optional[str]) -> Any:
    """`found` billing `quota` (google-auth's `with_quota_project`: the credentials add
    `x-goog-user-project` to every call), once: both channels then share this object and
    its token (gRPC's helper would make a copy per channel, each refreshing its own)."""
    if quota and getattr(found, "quota_project_id", None) != quota:
        if not hasattr(found, "with_quota_project"):
            raise UsageError(
                f"--quota-project {quota}: these credentials ({type(found).__name__}) "
                "cannot carry a quota project"
            )
        found = found.with_quota_project(quota)
    return found


class Channels:
    """The two channels of one database, opened when first used: the Firestore client's
    (`client`: document references, queries, aggregations, listings) and fsmigrate's fast
    one (`api`: scans, batch reads, commits). Both get the same credentials, endpoint,
    quota project and user agent. `close()` closes both (then neither may be used).

    `given_credentials` replaces what `credentials(connection)` would build (a caller
    with credentials of its own); `ssl_credentials`, the channels' TLS (default: the
    system's roots, or GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)."""

    def __init__(
        self,
        connection: Connection,
        project: str,
        database: str,
        *,
        given_credentials: Optional[Any] = None,
        ssl_credentials: Optional[grpc.ChannelCredentials] = None,
    ) -> None:
        self.connection = connection.check()
        self.project = project
        self.database = database
        self._given = given_credentials
        self.ssl_credentials = ssl_credentials  # None: the system's roots
        self._lock = threading.RLock()
        self._opened: list[grpc.Channel] = []
        self._client: Optional[firestore.Client] = None
        self._api: Optional[FirestoreClient] = None
        self.closed = False

    @functools.cached_property
    def credentials(self) -> Optional[Any]:
        """Built once (`credentials`), for both channels."""
        if self._given is not None:
            return with_quota_project(self._given, self.connection.quota_project)
        return credentials(self.connection, self.project)

    @property
    def client(self) -> firestore.Client:
        """The Firestore client, on a channel of its own made here (once)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> firestore.Client:
        wanted = self.connection.emulator_host
        with _emulator_env(wanted):
            options: dict[str, Any] = {}
            if not wanted:
                options = {  # the quota project is on the credentials
                    "credentials": self.credentials,
                    "client_options": {"api_endpoint": self.connection.host},
                }
            return _Client(
                self._gapic(fast=False),
                project=self.project,
                database=self.database,
                client_info=CLIENT_INFO,
                **options,
            )

    @property
    def api(self) -> FirestoreClient:
        """The Firestore API the Store's reads and commits go through (channel.py; once)."""
        with self._lock:
            if self._api is None:
                self._api = self._gapic(fast=True)
            return self._api

    def _gapic(self, *, fast: bool) -> FirestoreClient:
        """The client library's API class on a new channel (fast: with channel.OPTIONS)."""
        with self._lock:
            if self.closed:
                raise RuntimeError("these Firestore channels were closed")
            host = self.connection.host
            tuned = OPTIONS if fast else _SIZES
            if self.connection.is_emulator:
                channel = grpc.insecure_channel(host, options=[*tuned, *_AGENT])
            else:
                channel = FirestoreGrpcTransport.create_channel(
                    host,
                    credentials=self.credentials,  # the quota project is on them
                    ssl_credentials=self.ssl_credentials,
                    options=[*KEEPALIVE, *tuned, *_AGENT],
                )
            self._opened.append(channel)
        transport = FirestoreGrpcTransport(host=host, channel=channel, client_info=CLIENT_INFO)
        return FirestoreClient(transport=transport)

    @property
    def opened(self) -> int:
        """How many channels were opened (0, 1 or 2)."""
        return len(self._opened)

    def close(self) -> None:
        """Close every channel opened here (safe to call twice)."""
        with self._lock:
            self.closed = True
            opened, self._opened = self._opened, []
            self._client = self._api = None  # used again: RuntimeError, not a dead channel
        for channel in opened:
            channel.close()


class _Client(firestore.Client):
    """The Firestore client on the API `Channels` made (with fsmigrate's user agent, the
    same credentials and endpoint as the fast channel): the library builds the GAPIC
    client of `_firestore_api` itself, with its own client info and no way to pass one,
    so this one is given instead. tests/test_library_internals.py fails by name if the
    library stops reading `_firestore_api`."""

    def __init__(self, api: FirestoreClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fsmigrate_api = api

    @property
    def _firestore_api(self) -> FirestoreClient:
        return self._fsmigrate_api


_env_lock = threading.Lock()


@contextmanager
def _emulator_env(wanted: Optional[str]) -> Iterator[None]:
    """FIRESTORE_EMULATOR_HOST as `wanted` (unset for None) while a client is made: the
    client library finds the emulator only through it, read once when the client is
    made. A target whose emulator came from a config file gets it for that moment only."""
    if wanted:
        check_loopback(wanted.rpartition(":")[0].strip("[]") or wanted)
    with _env_lock:
        previous = os.environ.get(EMULATOR_ENV)
        if previous == wanted or (not previous and not wanted):
            yield
            return
        if wanted:
            os.environ[EMULATOR_ENV] = wanted
        else:
            os.environ.pop(EMULATOR_ENV, None)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(EMULATOR_ENV, None)
            else:
                os.environ[EMULATOR_ENV] = previous


class Pool:
    """One `Channels` per target and connection, shared by the Stores of a process's
    commands; `close()` closes them all (the command line does at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, Connection], Channels] = {}

    def get(self, connection: Connection, project: str, database: str) -> Channels:
        key = (project, database, connection)
        with self._lock:
            found = self._open.get(key)
            if found is None or found.closed:
                found = self._open[key] = Channels(connection, project, database)
            return found

    def close(self) -> int:
        """Close every pooled channel; how many `Channels` were closed."""
        with self._lock:
            found, self._open = list(self._open.values()), {}
        for channels in found:
            channels.close()
        return len(found)
