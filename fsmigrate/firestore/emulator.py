"""Start, probe, reset and stop the official Cloud Firestore emulator (a Java jar).

Only loopback addresses are accepted, and only processes started here (recorded by
PID) are ever stopped. Errors are raised from `fsmigrate.errors`; nothing is printed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from fsmigrate.errors import EmulatorError, EmulatorNotFound, UsageError

JAR_IN_SDK = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
DEFAULT_JAR = Path("/usr/lib/google-cloud-sdk") / JAR_IN_SDK
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
DEFAULT_RECORD = Path(".fsmigrate/emulator.json")
JAVA_HINT = "install Java 17 (Debian: openjdk-17-jre-headless) or set JAVA_HOME"

# Popen objects of the emulators started by this process, so they can be reaped.
_children: dict[int, subprocess.Popen] = {}


# ---- locating java and the jar --------------------------------------------------------


def find_jar(env: Mapping[str, str] = os.environ) -> Path:
    """The emulator jar: $FSMIGRATE_EMULATOR_JAR, $CLOUDSDK_ROOT_DIR, the SDK of `gcloud` on PATH, DEFAULT_JAR."""
    explicit = env.get("FSMIGRATE_EMULATOR_JAR")
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit)
        raise EmulatorNotFound(searched=[f"{explicit} (from FSMIGRATE_EMULATOR_JAR)"])
    candidates: list[Path] = []
    if env.get("CLOUDSDK_ROOT_DIR"):
        candidates.append(Path(env["CLOUDSDK_ROOT_DIR"]) / JAR_IN_SDK)
    gcloud = shutil.which("gcloud", path=env.get("PATH", os.defpath))
    if gcloud:  # <root>/bin/gcloud, possibly behind symlinks
        candidates.append(Path(gcloud).resolve().parent.parent / JAR_IN_SDK)
    candidates.append(DEFAULT_JAR)
    for jar in candidates:
        if jar.is_file():
            return jar
    raise EmulatorNotFound(searched=list(dict.fromkeys(str(c) for c in candidates)))


def find_java(env: Mapping[str, str] = os.environ) -> str:
    if env.get("JAVA_HOME"):
        java = Path(env["JAVA_HOME"]) / "bin" / "java"
        if java.is_file():
            return str(java)
        raise EmulatorError(
            f"JAVA_HOME is {env['JAVA_HOME']} but {java} does not exist; {JAVA_HINT}"
        )
    java_on_path = shutil.which("java", path=env.get("PATH", os.defpath))
    if java_on_path:
        return java_on_path
    raise EmulatorError(f"java was not found (JAVA_HOME is not set, no java on PATH); {JAVA_HINT}")


# ---- addresses ------------------------------------------------------------------------


def check_loopback(host: str) -> None:
    """Raise UsageError unless host is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return
    except ValueError:
        pass
    raise UsageError(
        f"emulator host {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost"
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_emulator_host(host_port: str | None) -> None:
    """Refuse (UsageError, exit 2) a FIRESTORE_EMULATOR_HOST that is not `host:port` on a
    loopback address, before anything connects: the emulator has no authentication, so
    traffic meant for it must never leave the machine."""
    if not host_port:
        return
    try:
        host, _ = _split(host_port)
        check_loopback(host)
    except UsageError as exc:
        raise UsageError(
            f"FIRESTORE_EMULATOR_HOST={host_port!r}: {exc}; nothing was sent to it "
            "(run the emulator on this machine: `fsmigrate emulator start`)"
        ) from None


def split_host_port(host_port: str) -> tuple[str, int]:
    """`127.0.0.1:8080`, `[::1]:8080` -> (host, port); UsageError otherwise."""
    return _split(host_port)


def _split(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"emulator address {host_port!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass
class Emulator:
    pid: int
    host: str
    port: int
    log_path: str

    @property
    def host_port(self) -> str:
        return _join(self.host, self.port)


# ---- processes ------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:  # started with start_new_session: leads its own group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        proc.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int, timeout: float = 10) -> bool:
    """SIGTERM the emulator (its process group), SIGKILL after timeout. True if it was running."""
    if not pid_alive(pid):
        _reap(pid)
        return False
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        if not _wait_gone(pid, 5):
            raise EmulatorError(f"emulator process {pid} did not exit after SIGKILL")
    _reap(pid)
    return True


# ---- HTTP -----------------------------------------------------------------------------


def is_ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{_join(host, port)}/", timeout=1) as resp:
            return resp.status == 200 and resp.read(64).strip() == b"Ok"
    except Exception:
        return False


def wait_ready(host: str, port: int, timeout: float, pid: int | None = None) -> None:
    """Poll until the emulator answers; EmulatorError if pid dies first or timeout passes."""
    deadline = time.monotonic() + timeout
    while not is_ready(host, port):
        if pid is not None and not pid_alive(pid):
            raise EmulatorError(
                f"the emulator process {pid} exited before {_join(host, port)} was ready"
            )
        if time.monotonic() >= deadline:
            raise EmulatorError(
                f"the emulator on {_join(host, port)} was not ready after {timeout:g} s"
            )
        time.sleep(0.1)


def reset(host_port: str, project: str, database: str = "(default)") -> None:
    """Delete every document of project/database in the emulator at host_port."""
    host, port = _split(host_port)
    check_loopback(host)
    path = "/emulator/v1/projects/{}/databases/{}/documents".format(
        urllib.parse.quote(project, safe=""), urllib.parse.quote(database, safe="()")
    )
    req = urllib.request.Request(f"http://{_join(host, port)}{path}", method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        raise EmulatorError(
            f"resetting {project}/{database} on {host_port} failed: HTTP {e.code} {e.reason}"
        ) from e
    except OSError as e:
        raise EmulatorError(f"resetting {project}/{database} on {host_port} failed: {e}") from e


# ---- starting -------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    useful = [ln for ln in text if ln.strip() and not ln.lstrip().startswith(("at ", "..."))]
    return "\n".join(useful[-lines:]) or "(empty log)"


def _spawn(java: str, jar: Path, host: str, port: int, log_path: Path, timeout: float) -> Emulator:
    cmd = [
        java,
        "-cp",
        str(jar),
        MAIN_CLASS,
        "start",
        f"--host={host}",
        f"--port={port}",
        "--database-mode=firestore-native",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    try:
        wait_ready(host, port, timeout, pid=proc.pid)
    except EmulatorError as e:
        stop(proc.pid)
        raise EmulatorError(f"{e} (log {log_path}):\n{_log_tail(log_path)}") from None
    except BaseException:  # e.g. KeyboardInterrupt: never leave the java process behind
        stop(proc.pid)
        raise
    return Emulator(pid=proc.pid, host=host, port=port, log_path=str(log_path))


def start(
    port: int | None = None,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
    timeout: float = 60,
) -> Emulator:
    """Start an emulator on host:port (a free port if None) and wait until it answers."""
    check_loopback(host)
    java, jar = find_java(), find_jar()
    log_dir = (
        Path(log_dir)
        if log_dir is not None
        else Path(tempfile.mkdtemp(prefix="fsmigrate-emulator-"))
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(host)
        log_path = log_dir / f"emulator-{chosen}.log"
        try:
            return _spawn(java, jar, host, chosen, log_path, timeout)
        except EmulatorError:
            raced = "BindException" in _log_tail(log_path, 50)  # port taken since free_port()
            if attempt + 1 == attempts or not raced:
                raise
    raise AssertionError("unreachable")


# ---- record for `fsmigrate emulator start|stop|status` ----------------------------------


def save(emu: Emulator, path: Path = DEFAULT_RECORD) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(emu), indent=2) + "\n")
    tmp.replace(path)


def load(path: Path = DEFAULT_RECORD) -> Emulator | None:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return Emulator(
            pid=int(data["pid"]),
            host=str(data["host"]),
            port=int(data["port"]),
            log_path=str(data["log_path"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EmulatorError(f"emulator record {path} is unreadable ({e}); delete it") from e


def is_emulator_process(pid: int) -> bool:
    """Whether pid still runs the emulator (guards against a recycled PID in a stale record)."""
    if not Path("/proc/self").exists():  # no /proc here: trust the record
        return pid_alive(pid)
    try:
        return MAIN_CLASS.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_recorded(path: Path = DEFAULT_RECORD, timeout: float = 10) -> Emulator | None:
    """Stop the emulator recorded at path (if it still runs) and delete the record."""
    emu = load(path)
    if emu is None:
        return None
    if pid_alive(emu.pid) and is_emulator_process(emu.pid):
        stop(emu.pid, timeout)
    Path(path).unlink(missing_ok=True)
    return emu
