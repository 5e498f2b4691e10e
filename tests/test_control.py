"""Live control of a running apply from a second process (`fsmigrate control`), the skip
budget (--max-skip-ratio), against the real emulator: the run goes on a thread of this
process, the controls come from `python -m fsmigrate control ...` subprocesses."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.engine.control import SkipBudget
from fsmigrate.errors import RunStopped, UsageError
from fsmigrate.report import runs as report
from fsmigrate.state.database import State
from helpers import (
    Background,
    Fsm,
    control_process,
    epoch,
    items_of,
    ops_of,
    seed_items,
    wait_for,
    write_script,
)

BUMP = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""
INTERVAL = "0.2"
N = 800  # at 40 ops/s, 20 s: time for a second process to start and send its control


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator, monkeypatch) -> api.Config:
    monkeypatch.setenv("FSMIGRATE_CONTROL_INTERVAL", INTERVAL)
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def control(cfg: api.Config, *args: str) -> subprocess.CompletedProcess:
    """`fsmigrate control ...` in a second process."""
    return control_process(str(cfg.project), *args)


def committed(cfg: api.Config) -> int:
    if not cfg.state_path.exists():
        return 0
    db = sqlite3.connect(f"file:{cfg.state_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM ops WHERE status='committed'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not there yet
        return 0
    finally:
        db.close()


stamp = epoch


def commit_times(cfg: api.Config, run_id: str) -> list[float]:
    return sorted(stamp(op["commit_time"]) for op in ops_of(cfg.state_path, run_id, "committed"))


@pytest.mark.long
def test_a_run_paused_from_a_second_process_commits_nothing_until_resumed(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, N)
    run = Background(lambda: api.upgrade(cfg, api.RunOptions(batch_size=10, max_rate=40)))
    wait_for(lambda: committed(cfg) >= 20)

    paused = control(cfg, "pause")

    assert paused.returncode == 0, paused.stderr
    assert "sent pause" in paused.stdout
    seen = wait_for(lambda: api.status(cfg).running or None)
    wait_for(lambda: api.status(cfg).running.paused_seen)  # the run has taken it
    status = api.status(cfg).running
    assert status.paused and status.revision == "0001" and status.operations
    before = committed(cfg)
    changed = sum(1 for n in items_of(fs_client).values() if n >= 1000)
    time.sleep(2.0)
    assert committed(cfg) == before < N  # nothing committed while paused
    assert sum(1 for n in items_of(fs_client).values() if n >= 1000) == changed
    assert run.thread.is_alive() and seen.holder

    resumed = control(cfg, "resume")

    assert resumed.returncode == 0, resumed.stderr
    run.join()
    assert run.error is None, run.error
    result = run.result.runs[0]
    assert result.status == "succeeded" and result.committed == N
    assert items_of(fs_client) == {f"i{i:05d}": i + 1000 for i in range(N)}
    events = result.controls
    assert [(e["action"], e["operator"]) for e in events] == [
        ("pause", "oncall"),
        ("resume", "oncall"),
    ]
    pause_seen, resume_seen = stamp(events[0]["seen_at"]), stamp(events[1]["seen_at"])
    assert resume_seen - pause_seen >= 2.0
    times = commit_times(cfg, result.run_id)
    # the batches in flight when the pause was taken settled before it was recorded
    assert not [t for t in times if pause_seen < t < resume_seen]
    assert any("control: paused by oncall@" in n for n in result.notes)
    audit = "".join(api.audit(cfg, result.run_id).chunks("text"))
    assert "paused by oncall@" in audit and "resumed by oncall@" in audit
    assert api.status(cfg).running is None  # the lock is released


@pytest.mark.long
def test_a_rate_change_is_visible_in_the_commit_times(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 600)
    run = Background(lambda: api.upgrade(cfg, api.RunOptions(batch_size=10, max_rate=60)))
    wait_for(lambda: committed(cfg) >= 10, timeout=60)

    slowed = control(cfg, "rate", "20")

    assert slowed.returncode == 0, slowed.stderr
    run.join()
    assert run.error is None, run.error
    result = run.result.runs[0]
    assert result.committed == 600
    [event] = result.controls
    assert (event["action"], event["value"]) == ("rate", "20")
    seen = stamp(event["seen_at"])
    after = [t for t in commit_times(cfg, result.run_id) if t > seen]
    before = [t for t in commit_times(cfg, result.run_id) if t <= seen]
    assert len(after) >= 100, "the rate change came too late to be measured"
    assert len(before) >= 10
    # at 20 ops/s, batches of 10 leave at least 0.5 s apart (the limiter's lower bound);
    # before, at 60 ops/s, they left 3 times as fast. Slack: the first batch after may have
    # taken its slot at the old rate, and commit times (the server's) trail the slots by a
    # send time that varies (a run under load fell 4 ms short of a one-batch slack)
    assert after[-1] - after[0] >= (len(after) - 30) / 20
    assert result.traffic is not None and result.traffic["max_rate"] == 20
    assert any("rate set to 20 ops/s by oncall@" in n for n in result.notes)


def test_stop_leaves_nothing_pending_and_the_next_run_finishes(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, N)
    run = Background(
        lambda: api.upgrade(cfg, api.RunOptions(batch_size=10, max_rate=40, concurrency=2))
    )
    wait_for(lambda: committed(cfg) >= 20)

    stopped = control(cfg, "stop", "--reason", "latency alarm")

    assert stopped.returncode == 0, stopped.stderr
    run.join()
    assert isinstance(run.error, RunStopped)
    assert "latency alarm" in str(run.error) and "oncall@" in str(run.error)
    first = run.error.partial.runs[0]
    assert first.status == "stopped" and first.error_kind == "stopped"
    assert "latency alarm" in first.error
    assert 20 <= first.committed < N
    # its report reads as stopped, not failed (the markdown of --report, or a PR comment)
    partial = run.error.partial
    outcome = report.Outcome("upgrade", dry_run=False, error=run.error, exit_code=4)
    state = State.open_readonly(cfg.state_path)  # the run's own is its thread's
    assert state is not None
    chunks = report.upgrade_chunks(
        state, partial.run_ids, partial.target, "markdown", full=False, outcome=outcome
    )
    markdown = "".join(chunks)
    state.close()
    assert markdown.startswith("# STOPPED: fsmigrate upgrade report\n")
    assert "- Outcome: **stopped**" in markdown and "**Stopped:** stopped by oncall@" in markdown
    assert "FAILED" not in markdown and "Error" not in markdown
    db = sqlite3.connect(cfg.state_path)
    assert db.execute("SELECT COUNT(*) FROM ops WHERE status='pending'").fetchone() == (0,)
    db.close()
    assert api.status(cfg).running is None  # lock released
    assert fs_client.document("_fsmigrate/control").get().exists is False
    assert control(cfg, "pause").returncode == 1  # nothing runs now

    finished = api.upgrade(cfg, api.RunOptions(batch_size=50)).runs[0]

    assert finished.status == "succeeded" and finished.resumes == first.run_id
    assert first.committed + finished.committed == N
    assert items_of(fs_client) == {f"i{i:05d}": i + 1000 for i in range(N)}  # once each
    assert [r.state for r in api.status(cfg).revisions] == ["applied"]


def test_the_cli_stop_exit_code_and_the_controls_usage_errors(cfg: api.Config, tmp_path) -> None:
    fsm = Fsm(str(cfg.project), cfg.state_path, cfg.migrations_path)
    out = fsm("control", "pause")
    assert out.exit_code == 1 and "no fsmigrate run holds the lock" in out.stderr
    out = fsm("control", "rate")
    assert out.exit_code == 2 and "operations per second" in out.stderr
    out = fsm("control", "rate", "-5")
    assert out.exit_code == 2
    out = fsm("control", "rate", "0")
    assert out.exit_code == 2 and "control pause" in out.stderr
    out = fsm("control", "pause", "now")
    assert out.exit_code == 2
    out = fsm("upgrade", "--max-skip-ratio", "1.5")
    assert out.exit_code == 2
    with pytest.raises(UsageError):
        api.control(cfg, "slower")


def test_a_run_against_a_busy_writer_stops_itself_past_the_skip_ratio(
    cfg: api.Config, fs_client, monkeypatch, tmp_path: Path
) -> None:
    seed_items(fs_client, 400)
    monkeypatch.setenv("FSMIGRATE_TEST_PAUSE", "before-commit:0.3")  # a slow commit path
    done = threading.Event()

    def busy_writer() -> None:  # the application, writing the same documents all along
        from google.cloud import firestore

        client = firestore.Client(project=cfg.project)
        while not done.is_set():
            batch = client.batch()
            for i in range(400):
                batch.update(client.document(f"items/i{i:05d}"), {"touched": time.time()})
            batch.commit()
        client.close()

    writer = threading.Thread(target=busy_writer, daemon=True)
    writer.start()
    try:
        fsm = Fsm(str(cfg.project), cfg.state_path, cfg.migrations_path)
        out = fsm(
            "upgrade",
            *("--batch-size", "20", "--max-skip-ratio", "0.2", "--quiet"),
            *("--report", str(tmp_path / "stopped.json")),
        )
    finally:
        done.set()
        writer.join(30)

    assert out.exit_code == 4, out.output
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("STOPPED: run ") and "--max-skip-ratio 0.2" in last
    # the summary says stopped too, in text and JSON: a stop on purpose is not a failure
    assert out.stdout.startswith("STOPPED (upgrade; 0 of 1 migration finished): project ")
    assert "\n  stopped: stopped by fsmigrate (--max-skip-ratio)@" in out.stdout
    assert "FAILED" not in out.output and "error:" not in out.stdout
    summary = json.loads((tmp_path / "stopped.json").read_text())
    assert (summary["ok"], summary["exit_code"], summary["outcome"]) == (False, 4, "stopped")
    assert summary["error"]["type"] == "RunStopped"
    assert summary["migrations"][0]["status"] == "stopped"
    [run] = api.history(cfg)
    assert run.status == "stopped" and "skipped or failed" in (run.error or "")
    assert run.skipped >= 100 and run.committed + run.skipped < 400  # it did not go on
    [event] = run.controls
    assert event["action"] == "stop" and event["operator"] == "fsmigrate (--max-skip-ratio)"
    db = sqlite3.connect(cfg.state_path)
    assert db.execute("SELECT COUNT(*) FROM ops WHERE status='pending'").fetchone() == (0,)
    db.close()
    # what was skipped was left as the application wrote it
    assert sum(1 for n in items_of(fs_client).values() if n >= 1000) == run.committed


def test_the_skip_budget_judges_a_sliding_window() -> None:
    budget = SkipBudget(0.1, window=100, minimum=50)
    budget.add(ok=0, bad=40)
    assert budget.exceeded() is None  # fewer than 50 judged
    budget.add(ok=10, bad=0)
    assert "40 of the last 50" in (budget.exceeded() or "")
    budget.add(ok=100, bad=0)  # the old skips slide out of the window
    assert budget.exceeded() is None
    budget.add(ok=0, bad=10)
    assert budget.exceeded() is None  # 10% is not past 0.1
    budget.add(ok=0, bad=1)
    assert budget.exceeded() is not None
    with pytest.raises(UsageError):
        SkipBudget(1.0)
