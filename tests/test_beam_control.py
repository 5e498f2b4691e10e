"""Live control of a `--runner beam` run: every worker (DirectRunner, 2 processes) reads the
control document at its batch boundaries; pause, resume, rate and stop reach them from a
second process. And Beam's own log lines stay off the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

from fsmigrate import api
from fsmigrate.errors import RunStopped
from helpers import (
    Background,
    control_process,
    epoch,
    items_of,
    ops_of,
    seed_items,
    wait_for,
    write_script,
)

EACH = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""
N = 800
INTERVAL = "0.2"  # FSMIGRATE_CONTROL_INTERVAL: the workers read the controls this often


def control(cfg: api.Config, *args: str) -> subprocess.CompletedProcess:
    return control_process(str(cfg.project), *args)


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator, monkeypatch) -> api.Config:
    monkeypatch.setenv("FSMIGRATE_CONTROL_INTERVAL", INTERVAL)
    write_script(tmp_path / "migrations", "0001", None, EACH)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def migrated(fs_client) -> int:
    return sum(1 for n in items_of(fs_client).values() if n >= 1000)


@pytest.mark.long
def test_a_beam_run_paused_from_a_second_process_commits_nothing_until_resumed(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, N)
    run = Background(
        lambda: api.upgrade(
            cfg, api.RunOptions(runner="beam", workers=2, batch_size=10, max_rate=40)
        )
    )
    wait_for(lambda: migrated(fs_client) >= 20, timeout=120)

    paused = control(cfg, "pause")

    assert paused.returncode == 0, paused.stderr
    time.sleep(1.5)  # each worker takes it at its next batch boundary (0.2 s polls)
    before = migrated(fs_client)
    time.sleep(3.0)
    assert migrated(fs_client) == before < N  # nothing committed while paused
    assert api.status(cfg).running.paused

    resumed = control(cfg, "resume")

    assert resumed.returncode == 0, resumed.stderr
    run.join(240)
    assert run.error is None, run.error
    result = run.result.runs[0]
    assert result.status == "succeeded" and result.committed == N
    assert items_of(fs_client) == {f"i{i:05d}": i + 1000 for i in range(N)}
    pause, resume = result.controls
    assert (pause["action"], resume["action"]) == ("pause", "resume")
    sent, resumed_at = epoch(pause["sent_at"]), epoch(resume["sent_at"])
    assert resumed_at - sent > 4.5
    times = [epoch(op["commit_time"]) for op in ops_of(cfg.state_path, result.run_id)]
    # after the pause reached the workers (a poll, and the batch each had in flight)
    quiet = [t for t in times if sent + 1.5 < t < resumed_at]
    assert quiet == []


def test_a_beam_run_stopped_leaves_nothing_pending_and_the_next_run_finishes(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, N)
    run = Background(
        lambda: api.upgrade(
            cfg, api.RunOptions(runner="beam", workers=2, batch_size=10, max_rate=40)
        )
    )
    wait_for(lambda: migrated(fs_client) >= 20, timeout=120)

    stopped = control(cfg, "stop", "--reason", "peak traffic")

    assert stopped.returncode == 0, stopped.stderr
    run.join(240)
    assert isinstance(run.error, RunStopped), run.error
    first = run.error.partial.runs[0]
    assert first.status == "stopped" and "peak traffic" in (first.error or "")
    assert 20 <= first.committed < N
    assert first.committed == migrated(fs_client)  # the record matches the database
    assert ops_of(cfg.state_path, first.run_id, "pending") == []
    assert [e["action"] for e in first.controls] == ["stop"]
    assert api.status(cfg).running is None

    finished = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=50)).runs[0]

    assert finished.status == "succeeded" and finished.resumes == first.run_id
    assert first.committed + finished.committed == N
    assert items_of(fs_client) == {f"i{i:05d}": i + 1000 for i in range(N)}  # once each


@pytest.mark.long
def test_a_rate_change_reaches_the_beam_workers(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 600)
    run = Background(
        lambda: api.upgrade(
            cfg, api.RunOptions(runner="beam", workers=2, batch_size=10, max_rate=60)
        )
    )
    wait_for(lambda: migrated(fs_client) >= 10, timeout=120)

    slowed = control(cfg, "rate", "20")

    assert slowed.returncode == 0, slowed.stderr
    run.join(240)
    assert run.error is None, run.error
    result = run.result.runs[0]
    assert result.committed == 600
    [event] = result.controls
    seen = epoch(event["sent_at"]) + 1.0  # the workers' next read, a batch in flight each
    times = sorted(epoch(op["commit_time"]) for op in ops_of(cfg.state_path, result.run_id))
    after = [t for t in times if t > seen]
    assert len(after) >= 100, "the rate change came too late to be measured"
    # 20 ops/s for both workers together (10 each): a lower bound the limiters guarantee
    assert after[-1] - after[0] >= (len(after) - 2 * 10 - 20) / 20
    assert (event["action"], event["value"]) == ("rate", "20")


def test_a_beam_run_prints_nothing_of_beams_own_on_the_terminal(
    cfg: api.Config, fs_client, tmp_path: Path
) -> None:
    seed_items(fs_client, 30)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsmigrate",
            "--project",
            str(cfg.project),
            "--state",
            str(cfg.state_path),
            "--migrations",
            str(cfg.migrations_path),
            "upgrade",
            "--runner",
            "beam",
            "--workers",
            "2",
            "--quiet",
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert out.returncode == 0, out.stderr
    terminal = out.stdout + out.stderr
    beams_own = ("GCSFileSystem", "apitools", "apache_beam", "WARNING:root", "INFO:")
    for marker in beams_own:
        assert marker not in terminal
    [run] = api.history(cfg)
    assert run.status == "succeeded" and run.committed == 30
    logs = [n for n in run.notes if n.startswith("beam: the pipeline's log is ")]
    assert len(logs) == 1
    log = Path(logs[0].rsplit(" ", 1)[1])
    # in the run's log file instead (which of its warnings Beam prints depends on its
    # version and on the Google libraries installed: GCSFileSystem, apitools, ...)
    logged = log.read_text()
    assert [marker for marker in beams_own if marker in logged], logged[:500]
