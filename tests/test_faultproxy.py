"""Real network faults between the Firestore client and the emulator, via tests/faultproxy.py.

What each fault produced here (google-cloud-firestore 2.34, google-api-core 2.44, grpcio 1.85),
for whoever tests retry logic with the proxy (details in the faultproxy module docstring):

* reset_all() on an idle channel: usually nothing, the next call reconnects by itself; called
  right after the reset with retry=None, a few % of calls get ServiceUnavailable ("Stream
  removed (sendmsg: Connection reset by peer)"); the default retry of get/set hides that.
* drop_after(n, "down") mid RunQuery stream: ServiceUnavailable ("Stream removed
  (recvmsg:Connection reset by peer)") from the gRPC iterator, but Query.stream() turns it into
  AttributeError, with the default retry and with retry=None alike (client bug, see below).
* refuse(True): ServiceUnavailable ("failed to connect to all addresses") with retry=None;
  RetryError (cause ServiceUnavailable) when a Retry's own timeout runs out.
* stall(s): no error, just s seconds slower.
* blackhole(True): DeadlineExceeded after the call's timeout.

Retry pitfall: `timeout=` is per attempt. The default Retry of reads (BatchGetDocuments,
RunQuery) lasts 300 s and retries DeadlineExceeded/ServiceUnavailable/InternalServerError, so
`doc.get(timeout=1)` during an outage can block for up to 5 minutes; commits retry
ServiceUnavailable (not DeadlineExceeded) for up to 60 s. Bound them with an explicit Retry.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from faultproxy import FaultProxy

N_DOCS = 2000
SEED_COLLECTION = "items"

# A bounded retry for "it must recover": never waits on the 60/300 s default deadlines.
RECOVER = Retry(
    predicate=if_exception_type(gexc.ServiceUnavailable), initial=0.05, maximum=0.5, timeout=10
)
NEVER = Retry(predicate=lambda exc: False)


@pytest.fixture(scope="module")
def seeded_project(emulator) -> str:
    """A project holding N_DOCS documents, written straight to the emulator (no proxy)."""
    from google.cloud import firestore

    project = "faultproxy-" + uuid.uuid4().hex[:8]
    client = firestore.Client(project=project)  # FIRESTORE_EMULATOR_HOST = the emulator
    try:
        col = client.collection(SEED_COLLECTION)
        for start in range(0, N_DOCS, 500):
            batch = client.batch()
            for i in range(start, start + 500):
                batch.set(col.document(f"d{i:05d}"), {"i": i, "pad": "x" * 200})
            batch.commit()
    finally:
        client.close()
    return project


@pytest.fixture
def proxy(emulator):
    with FaultProxy(emulator.host, emulator.port) as p:
        yield p


def _client_via(proxy: FaultProxy, project: str, monkeypatch: pytest.MonkeyPatch):
    from google.cloud import firestore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)  # before the client exists
    return firestore.Client(project=project)


@pytest.fixture
def client(proxy, project_id, monkeypatch):
    c = _client_via(proxy, project_id, monkeypatch)
    yield c
    c.close()


@pytest.fixture
def doc(client):
    ref = client.collection("things").document("one")
    ref.set({"v": 1})  # also opens the (single) HTTP/2 connection through the proxy
    return ref


def test_round_trip_through_proxy_counts_bytes(proxy, client):
    ref = client.collection("things").document("rt")
    ref.set({"hello": "world", "n": 7})
    assert ref.get().to_dict() == {"hello": "world", "n": 7}
    assert proxy.connections_total == 1  # one HTTP/2 connection carries every call
    assert proxy.bytes_up > 200 and proxy.bytes_down > 100
    assert proxy.resets_done == 0


def test_reset_all_on_idle_connection_reconnects_transparently(proxy, doc):
    before = proxy.connections_total
    assert proxy.reset_all() == 1
    assert proxy.resets_done == 1 and proxy.open_connections == 0
    # Observed: the next call succeeds. gRPC sees the RST on the idle socket, drops the
    # connection and opens a new one for the next RPC. Right after the reset, a call with
    # retry=None loses the race a few % of the time (ServiceUnavailable "Stream removed
    # (sendmsg: Connection reset by peer)"); the default retry of BatchGetDocuments/Commit
    # retries ServiceUnavailable, so with it we never saw a failure (0 in 120 tries).
    assert doc.get().to_dict() == {"v": 1}
    assert proxy.connections_total == before + 1

    assert proxy.reset_all() == 1
    time.sleep(0.5)  # once gRPC has noticed the reset, even retry=None is safe
    doc.set({"v": 2}, retry=None, timeout=5)
    assert doc.get(retry=None, timeout=5).to_dict() == {"v": 2}
    assert proxy.connections_total == before + 2 and proxy.resets_done == 2


@pytest.mark.parametrize("retry", ["none", "default", "never"])
def test_drop_after_breaks_query_stream_midway(proxy, seeded_project, monkeypatch, retry):
    client = _client_via(proxy, seeded_project, monkeypatch)
    try:
        kwargs = {"none": {"retry": None}, "default": {}, "never": {"retry": NEVER}}[retry]
        received: list[str] = []
        proxy.drop_after(100_000, "down")  # the whole result is ~660 kB
        with pytest.raises(Exception) as info:
            for snap in client.collection(SEED_COLLECTION).stream(**kwargs):
                received.append(snap.id)
        assert len(received) < N_DOCS
        assert proxy.resets_done == 1
        exc = info.value
        if retry == "never":
            # The raw error of the broken stream.
            # Observed: "503 Stream removed (recvmsg:Connection reset by peer (104))".
            assert isinstance(exc, gexc.ServiceUnavailable), repr(exc)
        else:
            # Observed: Query.stream() catches the ServiceUnavailable to decide whether to
            # resume after the last document, and crashes in that decision:
            #   retry=None -> None._predicate(exc)
            #   default    -> transport.run_query is the raw gRPC callable, no ._retry
            # (googleapis/python-firestore #596/#889). So the caller gets an AttributeError,
            # not a GoogleAPICallError, and the stream is NOT resumed. If this assertion
            # starts failing, the client library fixed it: update this test and the docs.
            assert isinstance(exc, AttributeError), repr(exc)
            assert ("_predicate" if retry == "none" else "_retry") in str(exc)
            assert isinstance(exc.__context__, gexc.ServiceUnavailable), repr(exc.__context__)
    finally:
        client.close()


def test_refuse_fails_new_connections_then_recovers(proxy, doc):
    proxy.refuse(True)
    # refuse only affects NEW connections: the open one keeps working until it is reset.
    assert doc.get(retry=None, timeout=5).exists
    proxy.reset_all()
    # Usually "failed to connect to all addresses; ... Connection reset by peer"; if the call
    # beats gRPC to noticing the reset: "Stream removed (sendmsg: Connection reset by peer)".
    with pytest.raises(gexc.ServiceUnavailable):
        doc.get(retry=None, timeout=2)
    with pytest.raises(gexc.ServiceUnavailable):
        doc.set({"v": 3}, retry=None, timeout=2)
    # A retrying call gives up when its Retry's own timeout is over -> RetryError.
    t0 = time.monotonic()
    with pytest.raises(gexc.RetryError) as info:
        doc.get(
            retry=Retry(
                predicate=if_exception_type(gexc.ServiceUnavailable),
                initial=0.05,
                maximum=0.2,
                timeout=0.6,
            )
        )
    assert isinstance(info.value.cause, gexc.ServiceUnavailable)
    assert time.monotonic() - t0 < 5
    assert proxy.connections_refused >= 1

    proxy.refuse(False)
    # gRPC's reconnect backoff (~1 s, growing) may still fail retry=None calls fast with
    # ServiceUnavailable for a moment after refuse(False); a retrying call recovers.
    before = proxy.connections_total
    assert doc.get(retry=RECOVER).to_dict() == {"v": 1}
    assert proxy.connections_total > before
    assert doc.get(retry=None, timeout=5).exists


def test_stall_delays_then_succeeds(proxy, doc):
    proxy.stall(1.0)
    t0 = time.monotonic()
    assert doc.get(retry=None, timeout=10).to_dict() == {"v": 1}
    assert time.monotonic() - t0 >= 0.9
    assert proxy.resets_done == 0 and proxy.connections_total == 1


def test_blackhole_hangs_until_deadline_then_recovers(proxy, doc):
    proxy.blackhole(True)
    t0 = time.monotonic()
    with pytest.raises(gexc.DeadlineExceeded):
        doc.get(retry=None, timeout=1)
    assert 0.9 <= time.monotonic() - t0 < 3
    # Commit's default retry does not cover DeadlineExceeded: it surfaces after one timeout.
    with pytest.raises(gexc.DeadlineExceeded):
        doc.set({"v": 4}, timeout=0.5)
    assert proxy.blackhole(False) == 0  # hold mode: nothing lost, the connection is kept
    assert doc.get(retry=None, timeout=5).exists
    assert proxy.connections_total == 1 and proxy.resets_done == 0


def test_blackhole_discard_resets_damaged_connection_on_lift(proxy, doc):
    proxy.blackhole(True, discard=True)
    with pytest.raises(gexc.DeadlineExceeded):
        doc.get(retry=None, timeout=0.5)
    assert proxy.bytes_blackholed > 0
    assert proxy.blackhole(False) == 1  # the HTTP/2 session lost bytes: it is reset
    assert doc.get(retry=RECOVER).to_dict() == {"v": 1}
    assert proxy.connections_total == 2


def test_stop_leaves_no_threads_or_listener(emulator, project_id, monkeypatch):
    proxy = FaultProxy(emulator.host, emulator.port).start()
    prefix = proxy.thread_prefix
    client = _client_via(proxy, project_id, monkeypatch)
    try:
        client.collection("things").document("s").set({"v": 1})
        proxy.stall(30)  # a pump is parked in a stall: stop() must still get it out
        threading.Thread(target=lambda: _swallow(client), daemon=True).start()
        time.sleep(0.2)
        assert any(t.name.startswith(prefix) for t in threading.enumerate())
        t0 = time.monotonic()
        proxy.stop()
        assert time.monotonic() - t0 < 3
        assert [t.name for t in threading.enumerate() if t.name.startswith(prefix)] == []
        assert proxy.open_connections == 0
        with pytest.raises(OSError):  # nobody listens any more
            socket.create_connection((proxy.host, proxy.port), timeout=1).close()
    finally:
        proxy.stop()
        client.close()


def _swallow(client) -> None:
    try:
        client.collection("things").document("s").get(retry=None, timeout=5)
    except Exception:
        pass


# ---- without the emulator: the raw TCP behaviour ------------------------------------------


@pytest.fixture
def echo_server():
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    while data := conn.recv(65536):
                        conn.sendall(data)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()
    t.join(5)


def test_drop_after_up_sends_rst_mid_stream(echo_server):
    with FaultProxy("127.0.0.1", echo_server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"a" * 10)
            assert s.recv(100) == b"a" * 10
            proxy.drop_after(5, "up")
            s.sendall(b"b" * 10)
            got = b""
            with pytest.raises(ConnectionResetError):
                while chunk := s.recv(100):
                    got += chunk
            assert got in (b"", b"b" * 5)  # at most the 5 bytes let through come back
        assert proxy.bytes_up == 15 and proxy.resets_done == 1


def test_refuse_resets_on_accept(echo_server):
    with FaultProxy("127.0.0.1", echo_server) as proxy:
        proxy.refuse(True)
        # The RST usually arrives before the non-blocking connect() has even completed
        # (gRPC reports "getsockopt(SO_ERROR): Connection reset by peer"), else on recv().
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                s.sendall(b"x")
                s.recv(10)
        assert proxy.connections_refused == 1


def test_only_loopback():
    with pytest.raises(ValueError):
        FaultProxy("10.1.2.3", 8080)
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 8080, host="0.0.0.0")
