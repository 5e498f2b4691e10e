"""Shared fixtures: one real Firestore emulator per test session, a fresh project per test.

FSMIGRATE_SKIP_EMULATOR=1 skips (visibly) every test that needs the emulator; otherwise a
missing jar or java makes those tests fail with instructions, never silently skip.
"""
from __future__ import annotations

import atexit
import os
import uuid
from typing import Iterator

import pytest

from fsmigrate import emulator as emu_mod
from fsmigrate.errors import EmulatorError

SKIP_REASON = "FSMIGRATE_SKIP_EMULATOR=1: the Firestore emulator tests did not run"


def _skip_emulator() -> bool:
    return os.environ.get("FSMIGRATE_SKIP_EMULATOR") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "emulator" in getattr(item, "fixturenames", ()) or item.get_closest_marker("emulator"):
            item.add_marker(pytest.mark.emulator)
            if _skip_emulator():
                item.add_marker(skip)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emu_mod.Emulator]:
    if _skip_emulator():
        pytest.skip(SKIP_REASON)
    try:
        emu = emu_mod.start(log_dir=tmp_path_factory.mktemp("emulator"))
    except EmulatorError as e:
        pytest.fail(str(e), pytrace=False)
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


@pytest.fixture
def project_id() -> str:
    return "test-" + uuid.uuid4().hex[:10]


@pytest.fixture
def fs_client(emulator: emu_mod.Emulator, project_id: str):
    from google.cloud import firestore

    client = firestore.Client(project=project_id)
    yield client
    client.close()
