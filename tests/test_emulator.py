from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from fsmigrate.errors import EmulatorError, EmulatorNotFound, UsageError
from fsmigrate.firestore import emulator as em

# ---- find_jar / find_java (no emulator needed) ------------------------------------------


def test_find_jar_honours_env_var(tmp_path: Path) -> None:
    jar = tmp_path / "my.jar"
    jar.write_bytes(b"PK")
    assert em.find_jar({"FSMIGRATE_EMULATOR_JAR": str(jar), "PATH": ""}) == jar


def test_find_jar_env_var_missing_does_not_fall_through(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jar"
    with pytest.raises(EmulatorNotFound) as exc:
        em.find_jar(
            {"FSMIGRATE_EMULATOR_JAR": str(missing), "PATH": "/usr/bin"}
        )  # DEFAULT_JAR may exist
    assert str(missing) in str(exc.value)
    assert "install" in str(exc.value) and "FSMIGRATE_EMULATOR_JAR" in str(exc.value)
    assert exc.value.searched == [f"{missing} (from FSMIGRATE_EMULATOR_JAR)"]


def _fake_sdk(root: Path, with_jar: bool) -> Path:
    (root / "bin").mkdir(parents=True)
    gcloud = root / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")
    gcloud.chmod(0o755)
    if with_jar:
        jar = root / em.JAR_IN_SDK
        jar.parent.mkdir(parents=True)
        jar.write_bytes(b"PK")
    return gcloud


def test_find_jar_nothing_found_lists_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing_default = tmp_path / "default" / "emulator.jar"
    monkeypatch.setattr(em, "DEFAULT_JAR", missing_default)
    _fake_sdk(tmp_path / "gsdk", with_jar=False)
    env = {"CLOUDSDK_ROOT_DIR": str(tmp_path / "sdkroot"), "PATH": str(tmp_path / "gsdk" / "bin")}
    with pytest.raises(EmulatorNotFound) as exc:
        em.find_jar(env)
    expected = [
        str(tmp_path / "sdkroot" / em.JAR_IN_SDK),
        str(tmp_path / "gsdk" / em.JAR_IN_SDK),
        str(missing_default),
    ]
    assert exc.value.searched == expected
    for path in expected:
        assert path in str(exc.value)

    env["PATH"] = str(tmp_path / "empty-bin")  # no gcloud at all
    with pytest.raises(EmulatorNotFound) as exc:
        em.find_jar(env)
    assert exc.value.searched == [expected[0], expected[2]]


def test_find_jar_uses_sdk_of_gcloud_behind_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(em, "DEFAULT_JAR", tmp_path / "missing.jar")
    gcloud = _fake_sdk(tmp_path / "sdk", with_jar=True)
    (tmp_path / "usrbin").mkdir()
    (tmp_path / "usrbin" / "gcloud").symlink_to(gcloud)
    assert (
        em.find_jar({"PATH": str(tmp_path / "usrbin")})
        == (tmp_path / "sdk" / em.JAR_IN_SDK).resolve()
    )


def test_find_java(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="openjdk-17-jre-headless"):
        em.find_java({"PATH": str(tmp_path)})
    with pytest.raises(EmulatorError, match="JAVA_HOME"):
        em.find_java({"JAVA_HOME": str(tmp_path / "jdk"), "PATH": "/usr/bin"})
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("")
    assert em.find_java({"JAVA_HOME": str(tmp_path / "jdk")}) == str(java)


# ---- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "0.0.0.0", "192.168.1.5", "::", ""])
def test_check_loopback_refuses(host: str) -> None:
    with pytest.raises(UsageError):
        em.check_loopback(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.5.6.7", "localhost", "LOCALHOST", "::1", "[::1]"]
)
def test_check_loopback_accepts(host: str) -> None:
    em.check_loopback(host)


def test_start_and_reset_refuse_non_loopback() -> None:
    with pytest.raises(UsageError):
        em.start(host="10.0.0.1", timeout=1)
    with pytest.raises(UsageError):
        em.reset("example.com:8080", "p")


def test_free_port_is_bindable() -> None:
    port = em.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_host_port_brackets_ipv6() -> None:
    assert em.Emulator(1, "127.0.0.1", 8080, "x").host_port == "127.0.0.1:8080"
    assert em.Emulator(1, "::1", 8080, "x").host_port == "[::1]:8080"


def test_save_load_round_trip(tmp_path: Path) -> None:
    record = tmp_path / "sub" / "emulator.json"
    assert em.load(record) is None
    emu = em.Emulator(pid=12345, host="127.0.0.1", port=8123, log_path="/tmp/x.log")
    em.save(emu, record)
    assert em.load(record) == emu
    record.write_text("{not json")
    with pytest.raises(EmulatorError, match="unreadable"):
        em.load(record)


# ---- with the real emulator --------------------------------------------------------------


def test_session_emulator_answers(emulator: em.Emulator) -> None:
    assert em.is_ready(emulator.host, emulator.port)
    assert em.pid_alive(emulator.pid) and em.is_emulator_process(emulator.pid)
    assert not em.is_ready(emulator.host, em.free_port())


def test_reset_wipes_only_that_project(emulator: em.Emulator, fs_client, project_id: str) -> None:
    from google.cloud import firestore

    other = firestore.Client(project="test-" + uuid.uuid4().hex[:10])
    try:
        fs_client.collection("users").document("a").set({"n": 1})
        fs_client.collection("users").document("a").collection("sub").document("s").set({"n": 2})
        other.collection("users").document("b").set({"n": 3})
        assert fs_client.collection("users").document("a").get().exists

        em.reset(emulator.host_port, project_id)

        assert not fs_client.collection("users").document("a").get().exists
        assert not fs_client.document("users/a/sub/s").get().exists
        assert list(fs_client.collection("users").stream()) == []
        assert other.collection("users").document("b").get().to_dict() == {"n": 3}
    finally:
        other.close()


def test_reset_error_when_nothing_listens() -> None:
    with pytest.raises(EmulatorError, match="resetting"):
        em.reset(f"127.0.0.1:{em.free_port()}", "p")


def test_second_emulator_start_stop_and_record(emulator: em.Emulator, tmp_path: Path) -> None:
    second = em.start(log_dir=tmp_path)
    try:
        assert second.port != emulator.port and second.pid != emulator.pid
        assert em.is_ready(second.host, second.port)
        assert Path(second.log_path).is_file()
        record = tmp_path / "rec" / "emulator.json"
        em.save(second, record)
        assert em.load(record) == second
        assert em.stop_recorded(record) == second
        assert not record.exists()
        assert not em.pid_alive(second.pid)
        assert not em.is_ready(second.host, second.port)
        assert em.stop(second.pid) is False  # already gone
        assert em.stop_recorded(record) is None
        assert em.is_ready(emulator.host, emulator.port)  # the session one is untouched
    finally:
        em.stop(second.pid)


def test_start_stop_by_pid(emulator: em.Emulator, tmp_path: Path) -> None:
    second = em.start(log_dir=tmp_path)
    try:
        assert em.is_ready(second.host, second.port)
        assert em.stop(second.pid) is True
        assert not em.pid_alive(second.pid)
        assert not Path(f"/proc/{second.pid}").exists()  # reaped, not a zombie
        assert not em.is_ready(second.host, second.port)
    finally:
        em.stop(second.pid)


@pytest.mark.emulator
def test_start_on_taken_port_fails_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmulatorError) as exc:
            em.start(port=port, log_dir=tmp_path, timeout=30)
    assert "exited before" in str(exc.value)
    assert "Address already in use" in str(exc.value)
