"""Run a command in a network namespace of its own whose only interface is `lo`, still
reaching chosen loopback ports of the test (through Unix sockets, which a network
namespace does not separate).

    with Loopback([front.port, tokens.port], tmp_path) as net:
        result = net.run([sys.executable, "-m", "fsmigrate", ...], env=env)
        net.isolated   # True: inside `unshare --net`; False: the machine forbids it

The test's servers listen on 127.0.0.1:PORT as usual. For each port, a bridge in the
test's process accepts on a Unix socket and connects to 127.0.0.1:PORT; inside the new
namespace (`unshare --net`, or `unshare -rn` when not root), this file run as a script
brings `lo` up, listens on 127.0.0.1:PORT (and [::1]:PORT) and pipes each connection to
that Unix socket, then runs the command. So the command and every process it starts (Beam
workers) see the same addresses as outside, and nothing else: any other address is
unreachable ("Network is unreachable"), so a call that tries to leave the machine fails.

Where the machine does not allow a network namespace, `run` is a plain subprocess on the
same loopback addresses (`isolated` is False).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

__all__ = ["Loopback", "can_isolate"]

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _unshare() -> list[str]:
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-r", "--net"]


def can_isolate() -> bool:
    """Whether this machine lets the tests make a network namespace."""
    try:
        done = subprocess.run([*_unshare(), "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy a -> b until a ends, then end b's writing side."""
    try:
        while data := a.recv(1 << 16):
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Both directions between two connected sockets; returns when both have ended."""
    other = threading.Thread(target=_pipe, args=(b, a), daemon=True)
    other.start()
    _pipe(a, b)
    other.join()
    a.close()
    b.close()


class _ToTcp(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    port = 0


class _BridgeHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        upstream = socket.create_connection(("127.0.0.1", server.port))
        _splice(self.request, upstream)


class Loopback:
    def __init__(self, ports: Sequence[int], directory: Optional[Path] = None) -> None:
        self.ports = list(ports)
        self.isolated = can_isolate()
        self._dir = tempfile.TemporaryDirectory(prefix="fsm-netns-", dir=directory)
        self._bridges: list[_ToTcp] = []

    def socket_of(self, port: int) -> str:
        return os.path.join(self._dir.name, f"{port}.sock")

    def __enter__(self) -> Loopback:
        if self.isolated:
            for port in self.ports:
                bridge = _ToTcp(self.socket_of(port), _BridgeHandler)
                bridge.port = port
                threading.Thread(target=bridge.serve_forever, daemon=True).start()
                self._bridges.append(bridge)
        return self

    def __exit__(self, *_: Any) -> None:
        for bridge in self._bridges:
            bridge.shutdown()
            bridge.server_close()
        self._dir.cleanup()

    def run(
        self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` (inside the namespace when the machine allows it); its output."""
        if self.isolated:
            forwards = [f"{port}={self.socket_of(port)}" for port in self.ports]
            argv = [*_unshare(), sys.executable, __file__, *forwards, "--", *argv]
        # a session of its own: on a timeout the whole group goes (Beam's workers too)
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(
                f"{argv[-1]!r} still running after {timeout} s (killed):\n{out}\n{err}"
            ) from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ---- inside the namespace (this file run as a script) ----------------------------------------


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _listen(family: socket.AddressFamily, host: str, port: int, path: str) -> None:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(64)

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(path)
            threading.Thread(target=_splice, args=(conn, upstream), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def main(args: list[str]) -> int:
    split = args.index("--")
    _lo_up()
    for forward in args[:split]:
        port, _, path = forward.partition("=")
        _listen(socket.AF_INET, "127.0.0.1", int(port), path)
        try:
            _listen(socket.AF_INET6, "::1", int(port), path)
        except OSError:
            pass  # no IPv6 loopback here: 127.0.0.1 serves
    return subprocess.run(args[split + 1 :]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
