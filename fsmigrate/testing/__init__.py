"""pytest plugin for testing a team's own migrations against the real Firestore emulator.

Registered through the `pytest11` entry point, so installing fsmigrate is enough (with
PYTEST_DISABLE_PLUGIN_AUTOLOAD set: `pytest -p fsmigrate.testing`). It provides:

- the ini option `fsmigrate_migrations` (default `migrations`, relative to the ini file);
- `firestore_emulator` (session): the emulator at FIRESTORE_EMULATOR_HOST when set (a
  loopback address that answers), otherwise the official emulator started for the session
  and stopped by its PID; FSMIGRATE_SKIP_EMULATOR=1 skips the tests that need it;
- `fsmigrate_migrations`: the migrations directory (from the ini option; override the
  fixture to test another one);
- `fsmigrate_seed`: the data the built-in tests seed, `{collection: {doc_id: data}}` or a
  callable taking the harness (default: nothing; override it);
- `fsmigrate_database`: the database the harness uses (default `(default)`; override it
  for a named database);
- `fsmigrate`: a `Harness` on a fresh project of that emulator, a temporary state file
  and the migrations directory.

The built-in tests are in `fsmigrate.testing.checks`; import them into a test module.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from fsmigrate.errors import EmulatorError, UsageError
from fsmigrate.firestore import emulator as emu_mod

__all__ = ["FirestoreEmulator", "started_emulator", "SKIP_REASON", "INI_OPTION"]

INI_OPTION = "fsmigrate_migrations"
SKIP_REASON = "FSMIGRATE_SKIP_EMULATOR=1: the Firestore emulator tests did not run"


def skip_emulator() -> bool:
    return os.environ.get("FSMIGRATE_SKIP_EMULATOR") == "1"


@dataclass(frozen=True)
class FirestoreEmulator:
    """The emulator the session uses; `pid` is None when it was started elsewhere."""

    host: str
    port: int
    pid: Optional[int] = None
    log_path: Optional[str] = None

    @property
    def host_port(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@contextlib.contextmanager
def started_emulator(log_dir: Path) -> Iterator[emu_mod.Emulator]:
    """Start the official emulator on a free loopback port, point FIRESTORE_EMULATOR_HOST
    at it while the block runs, then stop it by its PID. A missing jar or java fails the
    test with what to install (never a silent skip)."""
    try:
        emu = emu_mod.start(log_dir=log_dir)
    except EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)

    def safety_net() -> None:  # if the session dies before teardown
        emu_mod.stop(emu.pid)

    atexit.register(safety_net)
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        yield emu
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
        emu_mod.stop(emu.pid)
        atexit.unregister(safety_net)


def running_emulator(host_port: str) -> FirestoreEmulator:
    """The emulator FIRESTORE_EMULATOR_HOST names, checked: loopback, and answering."""
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        pytest.fail(f"FIRESTORE_EMULATOR_HOST={host_port!r} is not host:port", pytrace=False)
    try:
        emu_mod.check_loopback(host)
    except UsageError as exc:
        pytest.fail(f"FIRESTORE_EMULATOR_HOST: {exc}", pytrace=False)
    if not emu_mod.is_ready(host, int(port)):
        pytest.fail(
            f"FIRESTORE_EMULATOR_HOST={host_port} does not answer: start the emulator "
            "there (`fsmigrate emulator start`), or unset FIRESTORE_EMULATOR_HOST to "
            "let the tests start one",
            pytrace=False,
        )
    return FirestoreEmulator(host, int(port))


# ---- hooks and fixtures ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION,
        "The migrations directory the fsmigrate fixtures and built-in "
        "tests use, relative to the ini file (default: migrations).",
        default="migrations",
    )


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Firestore emulator for the session: FIRESTORE_EMULATOR_HOST's, or one started
    (and stopped by its PID) for the session. An object with host, port, host_port, pid."""
    if skip_emulator():
        pytest.skip(SKIP_REASON)
    host_port = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host_port:
        yield running_emulator(host_port)
        return
    with started_emulator(tmp_path_factory.mktemp("firestore-emulator")) as emu:
        yield emu


@pytest.fixture
def fsmigrate_migrations(pytestconfig: pytest.Config) -> Path:
    """The migrations directory under test (ini option `fsmigrate_migrations`)."""
    value = str(pytestconfig.getini(INI_OPTION) or "migrations")
    base = pytestconfig.inipath.parent if pytestconfig.inipath else pytestconfig.rootpath
    return (base / value).resolve()


@pytest.fixture
def fsmigrate_seed() -> Any:
    """What the built-in tests seed before the first migration: `{collection: {doc_id:
    data}}` or a callable taking the harness. Override it with data like production's."""
    return {}


@pytest.fixture
def fsmigrate_database() -> str:
    """The Firestore database the `fsmigrate` harness uses (default `(default)`); override
    it to test migrations against a named database, as the emulator supports them."""
    return "(default)"


@pytest.fixture
def fsmigrate(
    firestore_emulator: Any, fsmigrate_migrations: Path, fsmigrate_database: str, tmp_path: Path
) -> Iterator[Any]:
    """A `Harness` on a fresh project of the session's emulator (database
    `fsmigrate_database`)."""
    from fsmigrate.testing.harness import Harness

    try:
        harness = Harness(fsmigrate_migrations, tmp_path / "fsmigrate", database=fsmigrate_database)
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield harness
    finally:
        harness.close()
