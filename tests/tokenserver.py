"""A Google-style OAuth token server on loopback, and the service-account key file that
names it, for tests of the production path (tests/prodfront.py).

    with TokenServer(lifetime=3.0) as tokens:
        key = tokens.service_account(tmp_path / "key.json", project="p")
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key.path)
        ...
        tokens.check("Bearer ya29....")   # -> the principal's email, or raises TokenRefused

What google-auth does with such a key file (`service_account.Credentials`): it signs a
JWT with the key's private half (RS256: iss and sub the service account's email, aud the
key file's `token_uri`, a scope, iat and exp) and POSTs it to `token_uri` as
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`; the answer is an
access token and its `expires_in`. When the client library asks for self-signed JWTs
instead (`always_use_jwt_access`), no token is asked for: the JWT itself, with the API as
its audience or a scope, is the bearer token. The server checks both as Google would:
the signature against the key's public half, the issuer, the audience, the times.

The server is real: a `ThreadingHTTPServer` on 127.0.0.1 with a random port, the key a
real 2048-bit RSA key made by `cryptography`. Tokens it issues expire after `lifetime`
seconds, checked against the clock: a token shown after that is refused. With a short
lifetime google-auth takes a fresh token for each call (it refreshes a token that
expires within 3 minutes 45 seconds), so a caller that kept an old token is refused.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

__all__ = ["ServiceAccountKey", "TokenRefused", "TokenServer"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SELF_SIGNED_AUDIENCES = ("https://firestore.googleapis.com/", "https://firestore.googleapis.com")
# google-auth's grant assertions name Google's token endpoint as their audience, whatever
# the key file's token_uri (as Google's server expects); this server takes either.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class TokenRefused(Exception):
    """A bearer token the server does not accept; the message says why."""


@dataclass
class ServiceAccountKey:
    """A service account's key file, as the console downloads it."""

    path: Path
    email: str
    key_id: str
    public_pem: bytes


@dataclass
class _Issued:
    email: str
    expires: float  # time.time()


@dataclass
class TokenServer:
    lifetime: float = 3600.0  # seconds an access token is valid (its `expires_in`)
    host: str = "127.0.0.1"
    port: int = 0
    grants: int = 0  # tokens issued
    refused_grants: list[str] = field(default_factory=list)  # why each refused request
    _keys: dict[str, ServiceAccountKey] = field(default_factory=dict)  # by email
    _issued: dict[str, _Issued] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Optional[ThreadingHTTPServer] = None

    # ---- the key file -----------------------------------------------------------------

    @property
    def token_uri(self) -> str:
        return f"http://{self.host}:{self.port}/token"

    def service_account(
        self, path: Path, project: str, name: str = "fsmigrate-runner"
    ) -> ServiceAccountKey:
        """Write a service-account key file whose `token_uri` is this server (started)."""
        assert self.port, "start the token server first: its port is in the key file"
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        email = f"{name}@{project}.iam.gserviceaccount.com"
        key_id = secrets.token_hex(20)
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": project,
                    "private_key_id": key_id,
                    "private_key": pem,
                    "client_email": email,
                    "client_id": str(secrets.randbelow(10**20)),
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": self.token_uri,
                    "universe_domain": "googleapis.com",
                },
                indent=2,
            )
        )
        path.chmod(0o600)
        key = ServiceAccountKey(path=path, email=email, key_id=key_id, public_pem=public)
        with self._lock:
            self._keys[email] = key
        return key

    # ---- checking a bearer token ------------------------------------------------------

    def check(self, authorization: Optional[str]) -> str:
        """The principal (an email) of an `authorization` header's bearer token, or
        TokenRefused: no token, unknown, expired, or a JWT that fails its checks."""
        if not authorization:
            raise TokenRefused("no bearer token (authorization metadata missing)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenRefused(f"not a bearer token: {scheme!r}")
        if token.count(".") == 2:
            return self._check_self_signed(token)
        with self._lock:
            issued = self._issued.get(token)
        if issued is None:
            raise TokenRefused("unknown access token")
        late = time.time() - issued.expires
        if late > 0:
            raise TokenRefused(f"access token expired {late:.1f} s ago")
        return issued.email

    def _check_self_signed(self, token: str) -> str:
        claims = self._verify(token, audience=None)
        aud, scope = claims.get("aud"), claims.get("scope")
        if aud not in SELF_SIGNED_AUDIENCES and not scope:
            raise TokenRefused(f"self-signed JWT for another audience: {aud!r}")
        return str(claims["iss"])

    def _verify(self, token: str, audience: Optional[list[str]]) -> dict[str, Any]:
        """A JWT's claims, once its signature (by the key of its `iss`) and times are
        checked; TokenRefused otherwise."""
        try:
            unverified = jwt.decode(token, verify=False)
        except ValueError as exc:
            raise TokenRefused(f"not a JWT: {exc}") from None
        email = unverified.get("iss")
        with self._lock:
            key = self._keys.get(email)
        if key is None:
            raise TokenRefused(f"JWT from an unknown issuer: {email!r}")
        try:
            claims = jwt.decode(token, certs=key.public_pem, audience=audience)
        except ValueError as exc:  # bad signature, expired, wrong audience
            raise TokenRefused(f"JWT refused: {exc}") from None
        if claims.get("sub", email) != email:
            raise TokenRefused("JWT's subject is not its issuer")
        return dict(claims)

    # ---- the token endpoint -----------------------------------------------------------

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        """The answer to a token request (a JWT-bearer grant); TokenRefused when bad."""
        if form.get("grant_type") != JWT_BEARER:
            raise TokenRefused(f"unsupported grant_type {form.get('grant_type')!r}")
        claims = self._verify(
            form.get("assertion", ""), audience=[self.token_uri, GOOGLE_TOKEN_AUDIENCE]
        )
        if not claims.get("scope"):
            raise TokenRefused("the assertion asks for no scope")
        token = "ya29.test-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued[token] = _Issued(str(claims["iss"]), time.time() + self.lifetime)
            self.grants += 1
        return {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> TokenServer:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="tokenserver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server calls it by this name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = dict(urllib.parse.parse_qsl(body))
            if urllib.parse.urlsplit(self.path).path != "/token":
                self._answer(404, {"error": "not_found"})
                return
            try:
                answer = server.grant(form)
            except TokenRefused as exc:
                with server._lock:
                    server.refused_grants.append(str(exc))
                self._answer(400, {"error": "invalid_grant", "error_description": str(exc)})
                return
            self._answer(200, answer)

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:  # quiet
            pass

    return Handler
