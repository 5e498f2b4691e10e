"""What a Beam run stages for workers outside this environment: fsmigrate's own wheel
(tests/test_beam_portable.py installs it in a worker virtualenv and runs on it)."""

from __future__ import annotations

import datetime as dt
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

import fsmigrate
from fsmigrate.beam import pipeline as bp
from fsmigrate.beam import staging
from helpers import Fsm, items_of, seed_items, write_script

ROOT = Path(__file__).resolve().parent.parent
DELETE_EACH = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.delete(doc)
"""


def test_the_wheel_holds_the_package_its_metadata_and_a_record_of_hashes(tmp_path: Path) -> None:
    path = staging.wheel(tmp_path)

    assert path.name == f"fsmigrate-{fsmigrate.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        info = f"fsmigrate-{fsmigrate.__version__}.dist-info"
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        assert zf.testzip() is None
    sources = {
        f"fsmigrate/{p.relative_to(ROOT / 'fsmigrate').as_posix()}"
        for p in (ROOT / "fsmigrate").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources <= names  # every module, the templates, py.typed
    assert "fsmigrate/report/templates/audit.html.j2" in names
    assert not any(n.endswith(".pyc") for n in names)
    assert meta["Name"] == "fsmigrate" and meta["Version"] == fsmigrate.__version__
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("google-cloud-firestore") for r in requires)
    assert "fsmigrate = fsmigrate.cli:main" in entry_points
    assert {line.split(",")[0] for line in record} == names
    assert path.read_bytes() == staging.wheel(tmp_path / "again").read_bytes()  # reproducible


@pytest.mark.parametrize(
    ("runner", "staged", "remote"),
    [
        (None, False, False),
        ("DirectRunner", False, False),
        ("apache_beam.runners.direct.DirectRunner", False, False),
        ("PortableRunner", True, False),
        ("DataflowRunner", True, True),
        ("dataflow", True, True),
    ],
)
def test_what_is_staged_for_which_runner(runner: str | None, staged: bool, remote: bool) -> None:
    options = {} if runner is None else {"runner": runner}
    assert staging.needed(options) is staged
    assert staging.remote(options) is remote


def test_staged_packages_follow_the_users_own(tmp_path: Path) -> None:
    options = bp.options(2, {"runner": "PortableRunner", "extra_packages": "/mine.whl"}, ["/w.whl"])
    from apache_beam.options.pipeline_options import SetupOptions

    assert options.view_as(SetupOptions).extra_packages == ["/mine.whl", "/w.whl"]


def deleting_five(tmp_path: Path, project_id: str, fs_client) -> Fsm:
    """Five items, and a per-document migration that deletes them."""
    seed_items(fs_client, 5)
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE_EACH)
    return fsm


def test_a_dataflow_run_with_a_journal_on_this_disk_is_refused_before_it_starts(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    fsm = deleting_five(tmp_path, project_id, fs_client)

    out = fsm("upgrade", "--runner", "beam", "--beam-option", "runner=DataflowRunner")

    assert out.exit_code == 2 and out.stderr.count("\n") == 1, out.output
    assert "journal=gs://" in out.stderr
    assert items_of(fs_client) == {f"i{i:05d}": i for i in range(5)}
    assert not (tmp_path / "state.db.journal").exists()


def test_a_run_whose_workers_are_elsewhere_leaves_its_lease_to_expire_when_it_fails(
    tmp_path: Path, project_id: str, emulator, fs_client, monkeypatch
) -> None:
    """Workers on other machines may still commit when their coordinator fails or is
    interrupted (on Dataflow the job runs on): the lease says so before the pipeline is
    submitted, and is left to expire soon instead of being deleted; the next command is
    refused until then, naming the workers, and then takes over and imports the journal."""
    from fsmigrate.engine.lease import LOCK_PATH
    from fsmigrate.firestore.emulator import free_port

    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "2")
    monkeypatch.setenv("FSMIGRATE_LOCK_TTL", "10")  # its margin: 1 s
    fsm = deleting_five(tmp_path, project_id, fs_client)
    nobody = f"localhost:{free_port()}"  # a job service that is not there
    out = fsm(
        "upgrade", "--runner", "beam",
        "--beam-option", "runner=PortableRunner",
        "--beam-option", f"job_endpoint={nobody}",
        "--beam-option", "job_server_timeout=2",
    )  # fmt: skip

    assert out.exit_code != 0 and "Beam pipeline failed" in out.stderr, out.output
    lock = fs_client.document(LOCK_PATH).get().to_dict()
    assert lock["workers"] == "elsewhere"  # not deleted: handed over
    again = fsm("upgrade")
    assert again.exit_code == 3 and "Beam workers run elsewhere" in again.stderr
    left = (lock["expires_at"] - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 0 < left <= 2 + 1  # the call timeout and the margin
    time.sleep(left + 0.2)
    after = fsm("upgrade")
    assert after.exit_code == 0 and "took over a stale lock (expired)" in after.stderr
    assert items_of(fs_client) == {}
