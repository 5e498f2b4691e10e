"""Beam workers that have only what was staged, as on Dataflow: Beam's PortableRunner
(embedded job service) with an EXTERNAL worker pool started from a virtualenv of its own
that holds apache-beam (what Beam's SDK container has) and what fsmigrate stages (the
wheel a run builds, with its dependencies as pip installs them from it), in another
working directory, with none of the coordinator's FSMIGRATE_* variables and no
FIRESTORE_EMULATOR_HOST: the script, the run's connection and its settings reach the
workers through the pipeline only.

The virtualenv is made once per test session and shared by its pytest-xdist workers
(pip installing apache-beam and its dependencies: 80 s with an empty pip cache, 19-35 s
with pip's cache warm, on two busy cores; the seconds are written to `worker-venv/made`
in the session's temporary directory): the tests are marked `long`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

from fsmigrate import api
from fsmigrate.beam import pipeline as bp
from fsmigrate.beam import staging
from fsmigrate.errors import FsMigrateError, LockHeld
from fsmigrate.heartbeats import incident
from helpers import items_of, seed_items, write_script

pytestmark = [
    pytest.mark.long,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
WHERE = "worker: "
RATE = 300  # documents per second, all workers together

# A per-document migration that also says, once per worker, where it runs.
BUMP = """
import json
import os
import sys

import fsmigrate
from fsmigrate.distributed import scan

source = scan("items")
_told = []


def each(ctx, doc):
    if not _told:
        _told.append(True)
        env = [k for k in os.environ if k.startswith("FSMIGRATE_") or "EMULATOR" in k]
        where = {"prefix": sys.prefix, "fsmigrate": fsmigrate.__file__, "cwd": os.getcwd()}
        ctx.note("worker: " + json.dumps({**where, "env": sorted(env)}))
    if doc.get("n") % 3 == 0:
        yield ctx.delete(doc)
    else:
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
    ctx.count("seen")
"""


def expected_items(n: int) -> dict[str, int]:
    return {f"i{i:05d}": i + 1000 for i in range(n) if i % 3}


@pytest.fixture(scope="session")
def worker_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' virtualenv: apache-beam at the coordinator's version and the wheel a
    run stages, installed by pip with their dependencies (from the configured index).
    Made once per test session, shared by its pytest-xdist workers (the first makes it
    under a lock; the others wait and use it)."""
    from importlib import metadata

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's directory, above each worker's own
    root = shared / "worker-venv"
    root.mkdir(exist_ok=True)
    with open(shared / "worker-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = root / "made"
        if not made.exists():
            wheel = staging.wheel(root)
            venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
            python = root / "venv" / "bin" / "python"
            beam = f"apache-beam=={metadata.version('apache-beam')}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("FSMIGRATE_")}
            started = time.monotonic()
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", beam, str(wheel)],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            made.write_text(f"{time.monotonic() - started:.1f} s\n")
    return root / "venv"


@dataclass
class Pool:
    address: str
    pid: int
    home: Path  # the workers' working directory
    venv: Path  # the workers' virtualenv
    log: Path

    def options(self) -> dict[str, str]:
        return {
            "runner": "PortableRunner",
            "job_endpoint": "embed",
            "environment_type": "EXTERNAL",
            "environment_config": self.address,
        }

    def workers(self) -> list[int]:
        """The SDK worker processes the pool started (its children)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                if f"\nPPid:\t{self.pid}\n" in status:
                    found.append(int(entry.name))
        return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pool(worker_venv: Path, tmp_path: Path) -> Iterator[Pool]:
    """Beam's worker pool from the workers' virtualenv (its workers run the `python` on
    its PATH), in a directory of its own, with an environment that has nothing of the
    coordinator's settings."""
    home = tmp_path / "worker-home"
    home.mkdir()
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FSMIGRATE_", "FIRESTORE_", "GOOGLE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PATH=f"{worker_venv / 'bin'}:{env.get('PATH', '')}", HOME=str(home))
    log = tmp_path / "pool.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(worker_venv / "bin" / "python"),
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={port}",
            ],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield Pool(f"localhost:{port}", proc.pid, home, worker_venv, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ops_of(cfg: api.Config, run_id: str) -> list[tuple]:
    """(kind, path, status, archived) of every operation of a run, from its audit."""
    audit = api.audit(cfg, run_id)
    ops = [json.loads(line) for line in "".join(audit.chunks("jsonl")).splitlines()]
    return sorted((op["kind"], op["path"], op["status"], op["before"] is not None) for op in ops)


def archive_of(cfg: api.Config, run_id: str) -> dict[str, Any]:
    """The archived fields of every operation of a run: path -> the document's fields."""
    audit = api.audit(cfg, run_id)
    ops = [json.loads(line) for line in "".join(audit.chunks("jsonl")).splitlines()]
    return {op["path"]: (op["before"] or {}).get("fields") for op in ops}


def commit_times(cfg: api.Config, run_id: str) -> list[float]:
    audit = api.audit(cfg, run_id)
    return sorted(
        dt.datetime.fromisoformat(
            json.loads(line)["commit_time"].replace("Z", "+00:00")
        ).timestamp()
        for line in "".join(audit.chunks("jsonl")).splitlines()
    )


def workers_said(notes: list[str]) -> list[dict]:
    return [json.loads(n[len(WHERE) :]) for n in notes if n.startswith(WHERE)]


def test_a_per_document_migration_on_staged_workers_ends_as_on_the_local_runner(
    tmp_path: Path, emulator, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import firestore

    staged: list[bytes] = []
    options = bp.options

    def recording(workers: int, extra: dict[str, str], packages: Any = ()) -> Any:
        packages = list(packages)
        staged.extend(Path(p).read_bytes() for p in packages)
        return options(workers, extra, packages)

    monkeypatch.setattr(bp, "options", recording)
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    results = {}
    for runner in ("local", "portable"):
        project = f"items-{runner}-{os.getpid()}"
        client = firestore.Client(project=project)
        seed_items(client, 1500)
        cfg = api.Config(
            project=project, state=tmp_path / f"{runner}.db", migrations=tmp_path / "migrations"
        )
        opts = (
            api.RunOptions(
                runner="beam",
                workers=2,
                beam_options=pool.options(),
                max_rate=RATE,
                batch_size=100,
            )
            if runner == "portable"
            else api.RunOptions()
        )
        run = api.upgrade(cfg, opts).runs[0]
        results[runner] = (
            items_of(client),
            dict(run.counts),
            (run.status, run.committed, run.skipped),
            ops_of(cfg, run.run_id),
            archive_of(cfg, run.run_id),
            sorted(n for n in run.notes if not n.startswith(("beam:", WHERE))),
            workers_said(run.notes),
            commit_times(cfg, run.run_id),
        )
        client.close()

    local, portable = results["local"], results["portable"]
    assert portable[0] == local[0] == expected_items(1500)  # applied once, nothing missed
    assert portable[1:6] == local[1:6]  # counts, outcome, operations, archive, notes
    assert local[2] == ("succeeded", 1500, 0) and len(local[4]) == 1500
    # where the workers ran: the staged wheel in their own virtualenv, their own
    # directory, no FSMIGRATE_* and no emulator variable (the host came in the pipeline)
    said = portable[6]
    assert said, "no worker said where it ran"
    for where in said:
        assert where["env"] == []
        assert where["cwd"] == str(pool.home)
        assert where["prefix"] == str(pool.venv) != sys.prefix
        assert where["fsmigrate"].startswith(str(pool.venv))
    # what the run staged is the wheel the workers' virtualenv was made from
    [wheel] = pool.venv.parent.glob("*.whl")
    assert staged == [wheel.read_bytes()]
    # the run's traffic limit reached the workers (each keeps to its share)
    times = portable[7]
    assert times[-1] - times[0] >= (1500 - 2 * RATE - 2 * 100) / RATE


@pytest.mark.parametrize("legacy", [1035])  # the incident
def test_the_heartbeat_cleanup_on_staged_workers_ends_as_on_the_local_runner(
    tmp_path: Path, emulator, pool: Pool, legacy: int
) -> None:
    from google.cloud import firestore

    results = {}
    for runner in ("local", "portable"):
        project = f"hb-{runner}-{os.getpid()}"
        client = firestore.Client(project=project)
        incident.seed(client, NOW, legacy=legacy)
        cfg = api.Config(
            project=project, state=tmp_path / f"{runner}.db", migrations=ROOT / "migrations"
        )
        opts = (
            api.RunOptions(runner="beam", workers=2, beam_options=pool.options())
            if runner == "portable"
            else api.RunOptions()
        )
        run = api.upgrade(cfg, opts).runs[0]
        results[runner] = (
            {s.id: s.to_dict() for s in client.collection("processor_heartbeats").stream()},
            dict(run.counts),
            (run.status, run.committed, run.skipped),
            ops_of(cfg, run.run_id),
            archive_of(cfg, run.run_id),
            sorted(n for n in run.notes if not n.startswith("beam:")),
        )
        client.close()

    local, portable = results["local"], results["portable"]
    assert len(local[0]) == 20 and local[2][0] == "succeeded"
    assert portable == local  # documents, counts, outcome, operations, archive, notes


def test_a_staged_worker_killed_mid_run_is_settled_by_the_next_command(
    tmp_path: Path, emulator, pool: Pool, project_id: str, fs_client, monkeypatch
) -> None:
    """The pipeline fails; its workers were elsewhere, so the lease is left to expire one
    call timeout and one margin later (shortened here) and the next command, refused
    until then, takes it over and settles what the killed worker left."""
    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "5")
    monkeypatch.setenv("FSMIGRATE_LOCK_TTL", "20")  # its margin: 2 s
    seed_items(fs_client, 2400)
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    cfg = api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )
    opts = api.RunOptions(
        runner="beam", workers=2, batch_size=100, max_rate=400, beam_options=pool.options()
    )
    journal = Path(str(cfg.state_path) + ".journal")
    killed: list[int] = []

    def kill_a_worker_after_its_first_commits() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list(journal.glob("*/batch-*.outcome.json"))) >= 2 and pool.workers():
                victim = pool.workers()[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                return
            time.sleep(0.05)

    import threading

    killer = threading.Thread(target=kill_a_worker_after_its_first_commits)
    killer.start()
    with pytest.raises(FsMigrateError) as caught:
        api.upgrade(cfg, opts)
    killer.join()

    assert killed
    failed = caught.value.partial.runs[0]
    assert failed.status == "failed" and 0 < failed.committed < 2400

    with pytest.raises(LockHeld, match="Beam workers run elsewhere"):
        api.upgrade(cfg, opts)
    time.sleep(5 + 2)
    finished = api.upgrade(cfg, opts).runs[0]

    assert finished.status == "succeeded" and finished.resumes == failed.run_id
    assert items_of(fs_client) == expected_items(2400)  # nothing applied twice or missed
    committed = [
        op
        for run in (failed.run_id, finished.run_id)
        for op in ops_of(cfg, run)
        if op[2] == "committed"
    ]
    assert len(committed) == 2400 == len({path for _, path, _, _ in committed})
    deleted = [op for op in committed if op[0] == "delete"]
    assert len(deleted) == 800 and all(archived for *_, archived in deleted)  # archived once
