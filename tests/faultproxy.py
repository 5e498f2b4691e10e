"""A small fault-injecting TCP proxy for loopback tests (stdlib only).

Put it between the Firestore client and the emulator::

    with FaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)
        client = firestore.Client(project=project_id)   # create the client AFTER setting the env
        proxy.drop_after(20_000, "down")                 # break the next big response mid-stream

Design: one accept thread ("faultproxy-<port>-accept") and, per connection, two pump
threads ("faultproxy-<port>-c<N>-up" / "-down"), each copying one direction with blocking
sockets (0.25 s timeouts so nothing can hang forever). An "abort" (reset_all, drop_after,
refuse, or an RST received from one side) sets SO_LINGER to 0 on both sockets and wakes the
pumps with shutdown(SHUT_RD), which sends nothing on Linux; the last pump to leave closes both
sockets, so the peers receive a TCP RST (ECONNRESET), never a polite FIN. A FIN from one side
is forwarded as a FIN (half-close) to the other side. Only the pumps ever close connection
sockets, so no thread can use a recycled file descriptor.

What the Firestore client raises for each fault (google-cloud-firestore 2.34, google-api-core
2.44, grpcio 1.85, plaintext gRPC to the emulator; observed in tests/test_faultproxy.py):

* ``reset_all()`` on an idle channel: normally nothing. gRPC sees the RST, drops the
  connection and the next RPC opens a new one (connections_total + 1). A call issued right
  after the reset, before gRPC noticed it, can still be written to the dead socket: with
  ``retry=None`` a few % of calls fail with ``ServiceUnavailable`` ("Stream removed (sendmsg:
  Connection reset by peer)"); the default retries of get (BatchGetDocuments) and set
  (Commit) retry ServiceUnavailable, so with them no failure was seen.
* Reset of a connection while an RPC is in flight (seen with ``drop_after`` mid-stream):
  ``ServiceUnavailable`` ("Stream removed (recvmsg:Connection reset by peer)"). For a
  ``RunQuery`` stream, ``Query.stream()`` catches it to decide whether to resume after the
  last document and crashes there, so the caller gets ``AttributeError`` (``__context__`` is
  the ServiceUnavailable) with the default retry ("'_UnaryStreamMultiCallable' object has no
  attribute '_retry'") and with ``retry=None`` ("'NoneType' object has no attribute
  '_predicate'"): the stream is never resumed (googleapis/python-firestore #596, #889).
  Only ``retry=Retry(predicate=lambda e: False)`` surfaces the raw ServiceUnavailable.
* ``refuse(True)`` (affects new connections only; ``reset_all()`` to force reconnects):
  ``ServiceUnavailable`` ("failed to connect to all addresses ... Connection reset by
  peer") immediately with ``retry=None``; a retrying call fails with ``RetryError`` (``.cause``
  ServiceUnavailable) when its Retry's timeout runs out. After ``refuse(False)``, gRPC's
  reconnect backoff (~1 s, growing with each failure) can keep failing ``retry=None`` calls
  fast with ServiceUnavailable for a moment; retrying calls recover.
* ``stall(s)``: no error; calls take ``s`` seconds longer (DeadlineExceeded if their timeout
  is shorter).
* ``blackhole(True)``: ``DeadlineExceeded`` once the call's timeout expires (with
  ``retry=None``; Commit's default retry does not retry it either). In the default "hold" mode
  the connection survives and works again after ``blackhole(False)``; with ``discard=True``
  the damaged connection is reset when the blackhole is lifted (see ``blackhole``).

Retry pitfall: ``timeout=`` on a Firestore call is per attempt. The default Retry of reads
(BatchGetDocuments, RunQuery) retries DeadlineExceeded, ServiceUnavailable and
InternalServerError for up to 300 s, so ``doc.get(timeout=1)`` during an outage blocks until
the outage ends or 5 minutes pass; Commit retries ServiceUnavailable/ResourceExhausted (not
DeadlineExceeded) for up to 60 s. Pass an explicit, bounded ``Retry`` in tests.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Optional

from fsmigrate.errors import UsageError
from fsmigrate.firestore.emulator import check_loopback

__all__ = ["FaultProxy"]

_CHUNK = 64 * 1024
_POLL = 0.25  # socket timeout: how often blocked threads re-check their flags


def _check_loopback(host: str) -> None:
    try:
        check_loopback(host)  # the project's own rule: loopback only
    except UsageError as exc:
        raise ValueError(f"FaultProxy only works on loopback addresses, not {host!r}") from exc


def _set_linger_zero(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Conn:
    """One proxied connection: the client-side socket and the upstream socket."""

    def __init__(self, cid: int, client: socket.socket, upstream: socket.socket) -> None:
        self.cid = cid
        self.client = client
        self.upstream = upstream
        self.lock = threading.Lock()
        self.aborting = False
        self.closed = threading.Event()
        self.pumps_alive = 2
        self.lost_bytes = False  # bytes were blackholed: the stream is no longer coherent
        self.threads: list[threading.Thread] = []

    def abort(self) -> bool:
        """Arrange an abortive close (RST to both peers); True if this call started it."""
        with self.lock:
            if self.aborting or self.closed.is_set():
                return False
            self.aborting = True
            for sock in (self.client, self.upstream):
                _set_linger_zero(sock)
                try:  # wakes a blocked recv() without sending anything to the peer
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
            return True

    def half_close(self, sock: socket.socket) -> None:
        """Forward an EOF: FIN towards `sock`, keep reading from it."""
        with self.lock:
            if self.aborting or self.closed.is_set():
                return
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def pump_done(self) -> None:
        with self.lock:
            self.pumps_alive -= 1
            if self.pumps_alive > 0:
                return
            for sock in (self.client, self.upstream):
                if self.aborting:
                    _set_linger_zero(sock)
                try:
                    sock.close()
                except OSError:
                    pass
            self.closed.set()


class FaultProxy:
    """A loopback TCP proxy to one upstream that can reset, drop, stall, refuse and blackhole.

    Counters (read them any time): connections_total (accepted, refused ones included),
    connections_refused, resets_done (connections aborted by the proxy: reset_all,
    drop_after, refuse), bytes_up / bytes_down (bytes forwarded client->upstream /
    upstream->client), bytes_blackholed (bytes swallowed while blackholed).
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        _check_loopback(upstream_host)
        _check_loopback(host)
        self.upstream_host = upstream_host.strip("[]")
        self.upstream_port = int(upstream_port)
        self.host = host.strip("[]")
        self.port = int(port)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # wakes stalled pumps
        self._listener: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._conns: dict[int, _Conn] = {}
        self._next_cid = 0
        # faults
        self._refusing = False
        self._blackhole: Optional[str] = None  # None, "hold" or "discard"
        self._stall_until = 0.0
        self._drop: dict[str, Optional[int]] = {"up": None, "down": None}
        # counters
        self.connections_total = 0
        self.connections_refused = 0
        self.resets_done = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.bytes_blackholed = 0

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def thread_prefix(self) -> str:
        """Every thread of this proxy has a name starting with this."""
        return f"faultproxy-{self.port}-"

    def start(self) -> FaultProxy:
        if self._listener is not None:
            raise RuntimeError("FaultProxy already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            listener.settimeout(_POLL)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=self.thread_prefix + "accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and abort every connection; join all threads."""
        self._stopping.set()
        if self._accept_thread is not None:
            try:  # wake accept() now rather than at its next timeout
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as waker:
                    waker.settimeout(0.5)
                    waker.connect((self.host, self.port))
            except OSError:
                pass
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.abort()
        with self._cond:
            self._cond.notify_all()
        for conn in conns:
            for t in conn.threads:
                t.join(timeout=5)
        with self._lock:
            self._conns.clear()

    def __enter__(self) -> FaultProxy:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- faults ---------------------------------------------------------------------------

    def reset_all(self, wait: float = 2.0) -> int:
        """Abruptly reset every open connection (RST both ways); return how many.

        Returns once the sockets are closed (at most `wait` seconds)."""
        with self._lock:
            conns = list(self._conns.values())
        return self._reset(conns, wait)

    def _reset(self, conns: list[_Conn], wait: float = 2.0) -> int:
        aborted = [c for c in conns if c.abort()]
        with self._cond:  # wake pumps parked in a stall/hold so they see the abort
            self.resets_done += len(aborted)
            self._cond.notify_all()
        deadline = time.monotonic() + wait
        for conn in aborted:
            conn.closed.wait(max(0.0, deadline - time.monotonic()))
        return len(aborted)

    def drop_after(self, n_bytes: int, direction: str = "down") -> None:
        """One shot: after `n_bytes` more bytes in `direction` ("down" = upstream->client,
        "up" = client->upstream) on any connection, reset that connection mid-stream."""
        if direction not in ("up", "down"):
            raise ValueError("direction must be 'up' or 'down'")
        if n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        with self._lock:
            self._drop[direction] = int(n_bytes)

    def stall(self, seconds: float) -> None:
        """Stop forwarding in both directions for `seconds` (connections stay open)."""
        with self._cond:
            self._stall_until = max(self._stall_until, time.monotonic() + seconds)

    def refuse(self, on: bool) -> None:
        """While on, new connections are accepted and immediately reset."""
        with self._lock:
            self._refusing = bool(on)

    def blackhole(self, on: bool, discard: bool = False) -> int:
        """While on, nothing is forwarded in either direction; calls hang until their deadline.

        Default (discard=False), like a network partition that heals: each direction reads
        at most one chunk and holds it (then the kernel buffers fill up); when switched off,
        the held bytes are delivered, the HTTP/2 session is intact and the connection is
        reused. Requests that timed out meanwhile still reach the server afterwards (with the
        client's RST_STREAM right behind them): a timed-out write may or may not be applied.

        discard=True: bytes are read and thrown away. Losing bytes desynchronises the HTTP/2
        session (HPACK state, stream ids), so when the blackhole is switched off every
        connection that lost bytes is reset; gRPC then reconnects (or, if the connection was
        still in its HTTP/2 handshake, backs off ~1 s, failing calls fast with
        ServiceUnavailable). Returns how many connections were reset when switching off."""
        with self._cond:
            self._blackhole = ("discard" if discard else "hold") if on else None
            self._cond.notify_all()
            if on:
                return 0
            damaged = [c for c in self._conns.values() if c.lost_bytes]
        return self._reset(damaged)

    def clear_faults(self) -> None:
        """Disarm every fault (does not touch connections)."""
        with self._cond:
            self._refusing = False
            self._blackhole = None
            self._stall_until = 0.0
            self._drop = {"up": None, "down": None}
            self._cond.notify_all()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # ---- internals ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            if self._stopping.is_set():  # e.g. the waker of stop()
                client.close()
                return
            with self._lock:
                self.connections_total += 1
                refusing = self._refusing
                if refusing:
                    self.connections_refused += 1
                    self.resets_done += 1
            if refusing:
                _set_linger_zero(client)
                client.close()
                continue
            try:
                upstream = socket.create_connection(
                    (self.upstream_host, self.upstream_port), timeout=5
                )
            except OSError:  # upstream really down: behave like it
                _set_linger_zero(client)
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(_POLL)
            with self._lock:
                if self._stopping.is_set():
                    for sock in (client, upstream):
                        _set_linger_zero(sock)
                        sock.close()
                    return
                self._next_cid += 1
                conn = _Conn(self._next_cid, client, upstream)
                self._conns[conn.cid] = conn
                name = f"{self.thread_prefix}c{conn.cid}-"
                conn.threads = [
                    threading.Thread(
                        target=self._pump,
                        args=(conn, client, upstream, "up"),
                        name=name + "up",
                        daemon=True,
                    ),
                    threading.Thread(
                        target=self._pump,
                        args=(conn, upstream, client, "down"),
                        name=name + "down",
                        daemon=True,
                    ),
                ]
                for t in conn.threads:
                    t.start()

    def _wait_while_held(self, conn: _Conn) -> None:
        with self._cond:
            while not conn.aborting and not self._stopping.is_set():
                remaining = self._stall_until - time.monotonic()
                if remaining <= 0 and self._blackhole != "hold":
                    return
                self._cond.wait(min(remaining, _POLL) if remaining > 0 else _POLL)

    def _send_all(self, conn: _Conn, sock: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if conn.aborting:
                return False
            try:
                sent = sock.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not conn.aborting:
                try:
                    data = src.recv(_CHUNK)
                except TimeoutError:
                    continue
                except OSError:  # ECONNRESET from a peer: pass the reset on
                    conn.abort()
                    return
                if conn.aborting:
                    return
                if not data:  # EOF: forward the FIN, let the other direction finish
                    conn.half_close(dst)
                    return
                self._wait_while_held(conn)
                if conn.aborting:
                    return
                reset_after = False
                with self._lock:
                    if self._blackhole == "discard":
                        self.bytes_blackholed += len(data)
                        conn.lost_bytes = True
                        continue
                    remaining = self._drop[direction]
                    if remaining is not None:
                        if len(data) >= remaining:
                            data = data[:remaining]
                            self._drop[direction] = None
                            reset_after = True
                        else:
                            self._drop[direction] = remaining - len(data)
                    if direction == "up":
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                if data and not self._send_all(conn, dst, data):
                    conn.abort()
                    return
                if reset_after:
                    if conn.abort():
                        with self._lock:
                            self.resets_done += 1
                    return
        finally:
            conn.pump_done()
            if conn.closed.is_set():
                with self._lock:
                    self._conns.pop(conn.cid, None)
