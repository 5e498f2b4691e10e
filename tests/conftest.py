"""Shared fixtures: one real Firestore emulator per test session, a fresh project per test.

FSMIGRATE_SKIP_EMULATOR=1 skips (visibly) every test that needs the emulator; otherwise a
missing jar or java makes those tests fail with instructions, never silently skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from fsmigrate.firestore import emulator as emu_mod
from fsmigrate.testing import SKIP_REASON, started_emulator
from helpers import Fsm


def _skip_emulator() -> bool:
    return os.environ.get("FSMIGRATE_SKIP_EMULATOR") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The tests that mostly wait (marked `long`: a real outage, rate changes watched over
    # seconds) go first, so that with workers (bin/test runs pytest-xdist) they wait while
    # the rest runs beside them, not at the end.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "emulator" in getattr(item, "fixturenames", ()) or item.get_closest_marker("emulator"):
            item.add_marker(pytest.mark.emulator)
            if _skip_emulator():
                item.add_marker(skip)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emu_mod.Emulator]:
    """The session's own emulator (never FIRESTORE_EMULATOR_HOST's: some tests stop it
    or put a proxy in front of it), started like the plugin's."""
    if _skip_emulator():
        pytest.skip(SKIP_REASON)
    with started_emulator(tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture(scope="session")
def firestore_emulator(emulator: emu_mod.Emulator) -> emu_mod.Emulator:
    """The plugin's fixtures (`fsmigrate`) use the session's emulator too."""
    return emulator


@pytest.fixture
def project_id() -> str:
    return "test-" + uuid.uuid4().hex[:10]


@pytest.fixture
def fs_client(emulator: emu_mod.Emulator, project_id: str):
    from google.cloud import firestore

    client = firestore.Client(project=project_id)
    yield client
    client.close()


@pytest.fixture
def fsm(tmp_path, project_id: str, emulator: emu_mod.Emulator) -> Fsm:
    """The command line on a fresh project of the session's emulator, with a state file and
    a migrations directory of its own (empty; `write_script` fills it). A test module that
    needs scripts or data first overrides it and takes this one as its argument."""
    return Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the session's environment leaks into a test of the config file."""
    for var in (
        "FSMIGRATE_PROJECT",
        "FSMIGRATE_DATABASE",
        "FSMIGRATE_STATE",
        "FSMIGRATE_MIGRATIONS",
        "FSMIGRATE_MARKERS",
        "FSMIGRATE_ENV",
        "FSMIGRATE_CONFIG",
        "GOOGLE_CLOUD_PROJECT",
        "FSMIGRATE_ENDPOINT",
        "FSMIGRATE_CREDENTIALS",
        "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT",
        "GOOGLE_CLOUD_QUOTA_PROJECT",
    ):
        monkeypatch.delenv(var, raising=False)
