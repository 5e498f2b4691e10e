"""A gRPC-level fault proxy for loopback tests: it forwards every call to the emulator as
raw bytes, and answers chosen calls with a status code of its own instead.

    with GrpcFaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)  # before the client
        proxy.fail_next("Commit", grpc.StatusCode.RESOURCE_EXHAUSTED, times=2)

Why not tests/faultproxy.py: that proxy works on TCP bytes and can reset, stall or refuse
connections, but cannot make the server answer RESOURCE_EXHAUSTED (quota), ABORTED
(contention) or DEADLINE_EXCEEDED, which are gRPC statuses inside a healthy connection.

Design: a `grpc.server` (a thread pool) listening on a loopback address, with one generic
handler. A unary or server-streaming call is forwarded unchanged (no serializers: bytes in,
bytes out) over one insecure channel to the emulator, with the caller's metadata and
remaining deadline, and the emulator's answer (its error status included) is returned as
is. The bidirectional streams (Listen, Write) are not used by fsmigrate and answer
UNIMPLEMENTED. `fail_next(method, code, times)` makes the next `times` calls of `method`
(the short name, e.g. "Commit") fail with `code` WITHOUT forwarding them: nothing of such
a request reaches the emulator, as when a server refuses a request before applying it.

What it records: `calls[method]` (calls received), `failed[method]` (calls answered with
an injected status), and `committed_names`: the document names of the writes of every
Commit the emulator answered with success, in order, so a test can tell that each write
landed exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any, Optional

import grpc
from google.cloud.firestore_v1.types import CommitRequest

from fsmigrate.firestore.emulator import check_loopback

__all__ = ["GrpcFaultProxy"]

_SERVICE = "/google.firestore.v1.Firestore/"
_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery"}
_BIDI = {"Listen", "Write"}
_HOP_HEADERS = ("user-agent", "content-type", "te", "grpc-")
_CommitPb = CommitRequest.pb()


class GrpcFaultProxy:
    def __init__(
        self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", workers: int = 16
    ) -> None:
        for host in (target_host, listen_host):
            check_loopback(host)  # loopback only, as everything in the tests
        self.target = f"{target_host}:{target_port}"
        self.listen_host = listen_host
        self.port = 0
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.committed_names: list[str] = []
        self._faults: dict[str, list[list[Any]]] = {}  # [code, details, times, after]
        self._lock = threading.Lock()
        self._channel: Optional[grpc.Channel] = None
        self._server: Optional[grpc.Server] = None
        self._workers = workers

    # ---- control ----------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode,
        times: int = 1,
        details: Optional[str] = None,
        after: int = 0,
        forwarded: bool = False,
    ) -> None:
        """Answer `times` calls of `method` with `code`, without forwarding them: the next
        ones, or those after `after` more calls have gone through. With `forwarded`, each
        is forwarded first and applied by the emulator, and its answer is replaced by
        `code` (an answer lost on the way). Faults of one method are served in the order
        they were armed."""
        text = details or f"injected {code.name} by the test proxy"
        with self._lock:
            self._faults.setdefault(method, []).append([code, text, times, after, forwarded])

    def pending_faults(self, method: str) -> int:
        with self._lock:
            return sum(fault[2] for fault in self._faults.get(method, []))

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> GrpcFaultProxy:
        self._channel = grpc.insecure_channel(self.target)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="grpcfaults")
        )
        self._server.add_generic_rpc_handlers([_Handler(self)])
        self.port = self._server.add_insecure_port(f"{self.listen_host}:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> GrpcFaultProxy:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # ---- the calls --------------------------------------------------------------------

    def _take_fault(self, method: str) -> Optional[tuple[grpc.StatusCode, str, bool]]:
        with self._lock:
            self.calls[method] += 1
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            if fault[3] > 0:  # not yet: let this call through
                fault[3] -= 1
                return None
            fault[2] -= 1
            if fault[2] <= 0:
                queue.pop(0)
            self.failed[method] += 1
            return fault[0], fault[1], fault[4]

    def _forward_unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        fault = self._take_fault(method)
        if fault is not None and not fault[2]:
            context.abort(fault[0], fault[1])
        call = self._channel.unary_unary(_SERVICE + method)  # bytes in, bytes out
        try:
            response = call(request, metadata=_metadata(context), timeout=context.time_remaining())
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        if method == "Commit":
            names = [w.update.name or w.delete for w in _CommitPb.FromString(request).writes]
            with self._lock:
                self.committed_names.extend(names)
        if fault is not None:  # applied, and its answer lost
            context.abort(fault[0], fault[1])
        return response

    def _forward_stream(
        self, method: str, request: bytes, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        fault = self._take_fault(method)
        if fault is not None:  # (a stream's fault is never forwarded)
            context.abort(fault[0], fault[1])
        call = self._channel.unary_stream(_SERVICE + method)
        try:
            yield from call(request, metadata=_metadata(context), timeout=context.time_remaining())
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcFaultProxy) -> None:
        self.proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> Optional[grpc.RpcMethodHandler]:
        if not details.method.startswith(_SERVICE):
            return None
        method = details.method[len(_SERVICE) :]
        if method in _BIDI:
            return None  # UNIMPLEMENTED
        if method in _STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self.proxy._forward_stream(method, request, context)
            )
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self.proxy._forward_unary(method, request, context)
        )


def _metadata(context: grpc.ServicerContext) -> list[tuple[str, str]]:
    """The caller's metadata minus what gRPC sets per hop."""
    return [
        (m.key, m.value)
        for m in context.invocation_metadata()
        if not m.key.startswith(":") and not m.key.startswith(_HOP_HEADERS)
    ]
