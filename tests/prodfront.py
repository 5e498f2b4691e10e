"""Firestore as production serves it, on loopback: a TLS gRPC front that checks each call's
bearer token and records its metadata, forwarding the calls to the emulator.

    pki = Pki.make(tmp_path)                          # a throwaway CA, a localhost certificate
    with TokenServer(lifetime=3) as tokens, ProdFront(emulator.host, emulator.port, pki,
                                                      tokens, admin=FakeAdmin()) as front:
        key = tokens.service_account(tmp_path / "key.json", project)
        env = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(pki.ca_path),
               "GOOGLE_APPLICATION_CREDENTIALS": str(key.path)}
        ... fsmigrate --endpoint localhost:{front.port} ...
        front.calls                                   # every call: method, metadata, verdict

What it does with a call (a generic handler: bytes in, bytes out, no serializers):
- Checks the `authorization` metadata with the token server (tests/tokenserver.py): no
  token, an unknown or expired one is answered UNAUTHENTICATED without forwarding.
- A call of `google.firestore.v1.Firestore` is forwarded over one plain-text channel to
  the emulator with the caller's metadata (less the token and gRPC's per-hop headers) and
  remaining deadline; the emulator's answer, its error status included, goes back as is.
  Unary, server-streaming and bidirectional calls alike.
- A call of `google.firestore.admin.v1.FirestoreAdmin` is answered by `admin` (a
  FakeAdmin: GetDatabase from a table of databases), since the emulator has none.
- `answer_next(method, code, details)` answers the next call of `method` with a status
  of the test's choosing instead (a missing index, say), after checking its token.
- `strip`: metadata keys the front drops from every call as it arrives, as if the caller
  had not sent them (so a test can show that its checks fail when a call lacks a header).

Every call is recorded (`calls`: method, metadata, principal or refusal) so a test can
assert what each one carried. Loopback only, like everything in the tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.cloud.firestore_admin_v1.types import Database, GetDatabaseRequest

from fsmigrate.firestore.emulator import check_loopback
from tokenserver import TokenRefused, TokenServer

__all__ = ["Call", "FakeAdmin", "Pki", "ProdFront", "database_of"]

FIRESTORE = "/google.firestore.v1.Firestore/"
ADMIN = "/google.firestore.admin.v1.FirestoreAdmin/"
# The kinds of Firestore's streaming methods (the rest are unary)
SERVER_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery", "ExecutePipeline"}
BIDI = {"Write", "Listen"}
_HOP_HEADERS = ("user-agent", "content-type", "te", "grpc-", "authorization")


# ---- the certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throwaway certificate authority and a certificate it signed for `localhost`
    (and 127.0.0.1, ::1); `ca_path` is the CA's PEM file (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)."""

    ca_path: Path
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def make(cls, directory: Path) -> Pki:
        now = dt.datetime.now(dt.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fsmigrate test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        ca_path = directory / "test-ca.pem"
        ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(ca_path, cert.public_bytes(serialization.Encoding.PEM), key_pem)


# ---- the fake admin service ---------------------------------------------------------------


@dataclass
class FakeAdmin:
    """FirestoreAdmin's GetDatabase from a table of `Database` messages by name
    (`projects/P/databases/D`); NOT_FOUND for any other; `denied` answers every call
    PERMISSION_DENIED, as for a principal without an admin read role."""

    databases: dict[str, Database] = field(default_factory=dict)
    denied: bool = False
    calls: list[str] = field(default_factory=list)  # the names asked for
    metadata: list[dict[str, str]] = field(default_factory=list)  # each call's metadata

    def add(self, project: str, database: str = "(default)", **fields: Any) -> Database:
        name = f"projects/{project}/databases/{database}"
        defaults: dict[str, Any] = {
            "name": name,
            "location_id": "eur3",
            "type_": Database.DatabaseType.FIRESTORE_NATIVE,
            "concurrency_mode": Database.ConcurrencyMode.PESSIMISTIC,
            "point_in_time_recovery_enablement": (
                Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_DISABLED
            ),
            "delete_protection_state": Database.DeleteProtectionState.DELETE_PROTECTION_DISABLED,
        }
        self.databases[name] = Database(**{**defaults, **fields})
        return self.databases[name]

    def handler(self, method: str) -> Optional[grpc.RpcMethodHandler]:
        if method != "GetDatabase":
            return None  # UNIMPLEMENTED
        return grpc.unary_unary_rpc_method_handler(
            self.get_database,
            request_deserializer=GetDatabaseRequest.deserialize,
            response_serializer=Database.serialize,
        )

    def get_database(self, request: GetDatabaseRequest, context: grpc.ServicerContext) -> Any:
        self.calls.append(request.name)
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        if self.denied:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "The caller does not have permission (datastore.databases.getMetadata)",
            )
        found = self.databases.get(request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Database '{request.name}' not found")
        return found

    def serve(
        self, host: str = "127.0.0.1", credentials: Optional[grpc.ServerCredentials] = None
    ) -> tuple[grpc.Server, int]:
        """On a port of its own, plain text unless `credentials` (a started server, its
        port)."""
        check_loopback(host)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        admin = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> Any:
                if details.method.startswith(ADMIN):
                    return admin.handler(details.method[len(ADMIN) :])
                return None

        server.add_generic_rpc_handlers([Handler()])
        if credentials is None:
            port = server.add_insecure_port(f"{host}:0")
        else:
            port = server.add_secure_port(f"{host}:0", credentials)
        server.start()
        return server, port


# ---- the front ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call the front received."""

    method: str  # the short name, e.g. "RunQuery" or "GetDatabase"
    service: str  # "firestore" or "admin"
    metadata: dict[str, str]
    principal: Optional[str]  # the token's email, or None when refused
    refused: Optional[str]  # why the token was refused

    @property
    def routing(self) -> dict[str, str]:
        """x-goog-request-params, decoded."""
        return dict(urllib.parse.parse_qsl(self.metadata.get("x-goog-request-params", "")))

    @property
    def user_agents(self) -> str:
        return " ".join(self.metadata.get(k, "") for k in ("user-agent", "x-goog-api-client"))


def database_of(call: Call) -> Optional[str]:
    """The database (`projects/P/databases/D`) a call names in its routing header, either
    as `project_id` and `database_id` or in a resource name."""
    params = call.routing
    if "project_id" in params and "database_id" in params:
        return f"projects/{params['project_id']}/databases/{params['database_id']}"
    for value in params.values():
        parts = value.split("/")
        if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "databases":
            return "/".join(parts[:4])
    return None


class ProdFront:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        pki: Pki,
        tokens: TokenServer,
        admin: Optional[FakeAdmin] = None,
        listen_host: str = "127.0.0.1",
        workers: int = 16,
    ) -> None:
        for host in (target_host, listen_host):
            check_loopback(host)
        self.target = f"{target_host}:{target_port}"
        self.listen_host = listen_host
        self.pki = pki
        self.tokens = tokens
        self.admin = admin
        self.port = 0
        self.calls: list[Call] = []
        self.strip: frozenset[str] = frozenset()  # keys dropped from each call on arrival
        self._answers: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._lock = threading.Lock()
        self._workers = workers
        self._channel: Optional[grpc.Channel] = None
        self._server: Optional[grpc.Server] = None

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def answer_next(self, method: str, code: grpc.StatusCode, details: str) -> None:
        """Answer the next call of `method` (with a good token) with `code` instead of
        forwarding it."""
        with self._lock:
            self._answers.setdefault(method, []).append((code, details))

    def accepted(self) -> list[Call]:
        return [c for c in self.calls if c.refused is None]

    def refused(self) -> list[Call]:
        return [c for c in self.calls if c.refused is not None]

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> ProdFront:
        self._channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
            ],
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="prodfront"),
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
            ],
        )
        self._server.add_generic_rpc_handlers([_Handler(self)])
        credentials = grpc.ssl_server_credentials([(self.pki.key_pem, self.pki.cert_pem)])
        self.port = self._server.add_secure_port(f"{self.listen_host}:0", credentials)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> ProdFront:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # ---- each call --------------------------------------------------------------------

    def admit(self, service: str, method: str, context: grpc.ServicerContext) -> None:
        """Record the call; abort it when its token is refused or an answer is armed."""
        metadata = {
            m.key: m.value for m in context.invocation_metadata() if m.key not in self.strip
        }
        try:
            principal, refused = self.tokens.check(metadata.get("authorization")), None
        except TokenRefused as exc:
            principal, refused = None, str(exc)
        with self._lock:
            self.calls.append(Call(method, service, metadata, principal, refused))
            queue = self._answers.get(method) if refused is None else None
            answer = queue.pop(0) if queue else None
        if refused is not None:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"Request had invalid credentials: {refused}"
            )
        if answer is not None:
            context.abort(*answer)

    def forward_unary(self, method: str, request: Any, context: grpc.ServicerContext) -> bytes:
        self.admit("firestore", method, context)
        assert self._channel is not None
        call = self._channel.unary_unary(FIRESTORE + method)
        try:
            return call(
                request, metadata=_forwarded(context, self.strip), timeout=context.time_remaining()
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
            raise  # not reached: abort raises

    def forward_stream(
        self, method: str, request: Any, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        self.admit("firestore", method, context)
        assert self._channel is not None
        if method in BIDI:
            call: Any = self._channel.stream_stream(FIRESTORE + method)
        else:
            call = self._channel.unary_stream(FIRESTORE + method)
        try:
            yield from call(
                request, metadata=_forwarded(context, self.strip), timeout=context.time_remaining()
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, front: ProdFront) -> None:
        self.front = front

    def service(self, details: grpc.HandlerCallDetails) -> Optional[grpc.RpcMethodHandler]:
        front = self.front
        if details.method.startswith(ADMIN):
            method = details.method[len(ADMIN) :]
            inner = front.admin.handler(method) if front.admin is not None else None
            if inner is None:
                return None
            behaviour = inner.unary_unary

            def admin_call(request: Any, context: grpc.ServicerContext) -> Any:
                front.admit("admin", method, context)
                return behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(
                admin_call,
                request_deserializer=inner.request_deserializer,
                response_serializer=inner.response_serializer,
            )
        if not details.method.startswith(FIRESTORE):
            return None
        method = details.method[len(FIRESTORE) :]
        if method in BIDI:
            return grpc.stream_stream_rpc_method_handler(
                lambda requests, context: front.forward_stream(method, requests, context)
            )
        if method in SERVER_STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: front.forward_stream(method, request, context)
            )
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: front.forward_unary(method, request, context)
        )


def _forwarded(context: grpc.ServicerContext, strip: frozenset[str]) -> list[tuple[str, str]]:
    """The caller's metadata minus its token and what gRPC sets per hop, plus the
    emulator's own admin token (`Bearer owner`): the front has checked the caller, and the
    emulator refuses metadata calls (ListCollectionIds) to anyone else."""
    return [
        *(
            (m.key, m.value)
            for m in context.invocation_metadata()
            if not m.key.startswith(":")
            and not m.key.startswith(_HOP_HEADERS)
            and m.key not in strip
        ),
        ("authorization", "Bearer owner"),
    ]
