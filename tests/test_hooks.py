"""Hooks (`fsmigrate.hooks` entry points) and the built-in webhook, against the emulator: a
hook is called with the run's result; one that fails or hangs is reported and changes
nothing of the run's outcome; the webhook posts a Slack-compatible summary to a server on
loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fsmigrate import api
from fsmigrate.engine import hooks
from fsmigrate.errors import MigrationFailed
from helpers import seed_items, write_script

BUMP = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""
BROKEN = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
        raise RuntimeError("the migration's own bug")
"""
HOOKS = """
import json, os, time

def record(event, run):
    with open(os.environ["HOOK_LOG"], "a") as fh:
        fh.write(json.dumps({"event": event, "run": run}) + "\\n")

def failing(event, run):
    raise RuntimeError("the pager is down")

def hanging(event, run):
    time.sleep(60)
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch) -> Path:
    """A distribution on sys.path registering three hooks through its entry points."""
    site = tmp_path / "site"
    (site / "hookplugin-1.0.dist-info").mkdir(parents=True)
    (site / "hookplugin.py").write_text(HOOKS)
    (site / "hookplugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hookplugin\nVersion: 1.0\n"
    )
    (site / "hookplugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[fsmigrate.hooks]\nrecord = hookplugin:record\nfailing = hookplugin:failing\n"
        "hanging = hookplugin:hanging\nmissing = hookplugin:not_there\n"
    )
    monkeypatch.syspath_prepend(str(site))
    log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("FSMIGRATE_HOOK_TIMEOUT", "1")
    return log


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator) -> api.Config:
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_hooks_are_called_with_the_result_and_a_failing_or_hanging_one_is_reported(
    cfg: api.Config, fs_client, plugin: Path
) -> None:
    seed_items(fs_client, 30)
    started = time.monotonic()

    result = api.upgrade(cfg, api.RunOptions(batch_size=10))

    took = time.monotonic() - started
    run = result.runs[0]
    assert run.status == "succeeded" and run.committed == 30  # the outcome is unchanged
    seen = calls(plugin)
    assert [c["event"] for c in seen] == ["start", "finish"]
    assert seen[0]["run"]["run_id"] == seen[1]["run"]["run_id"] == run.run_id
    assert seen[0]["run"]["status"] == "running"
    assert seen[1]["run"]["status"] == "succeeded" and seen[1]["run"]["committed"] == 30
    warnings = "\n".join(result.warnings)
    assert "hook failing on start: raised RuntimeError: the pager is down" in warnings
    assert "hook failing on finish: raised RuntimeError" in warnings
    assert "hook hanging on start: did not return within 1 s" in warnings
    assert "hook hanging on finish: did not return within 1 s" in warnings
    assert "hook missing on load: AttributeError" in warnings
    assert any("hook hanging on finish" in n for n in run.notes)
    assert took < 50  # two bounded waits, not the hanging hook's minute


def test_a_failed_run_calls_the_fail_hooks_and_keeps_its_error(
    cfg: api.Config, fs_client, plugin: Path
) -> None:
    seed_items(fs_client, 5)
    write_script(cfg.migrations_path, "0001", None, BROKEN)

    with pytest.raises(MigrationFailed, match="the migration's own bug") as caught:
        api.upgrade(cfg)

    seen = calls(plugin)
    assert [c["event"] for c in seen] == ["start", "fail"]
    assert seen[1]["run"]["status"] == "failed"
    assert "the migration's own bug" in seen[1]["run"]["error"]
    partial = caught.value.partial  # type: ignore[attr-defined]
    assert any("hook failing on fail" in w for w in partial.warnings)


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(  # type: ignore[attr-defined]
            (self.path, self.headers["Content-Type"], json.loads(body))
        )
        if self.server.hang:  # type: ignore[attr-defined]
            time.sleep(5)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    server.hang = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_webhook_posts_a_slack_compatible_summary(
    cfg: api.Config, fs_client, receiver: ThreadingHTTPServer, monkeypatch
) -> None:
    seed_items(fs_client, 12)
    port = receiver.server_address[1]
    monkeypatch.setenv("FSMIGRATE_WEBHOOK_URL", f"http://127.0.0.1:{port}/services/T0/B0/x")

    result = api.upgrade(cfg, api.RunOptions(batch_size=5))

    run = result.runs[0]
    assert result.warnings == []
    [(path, content_type, payload)] = receiver.received  # type: ignore[attr-defined]
    assert path == "/services/T0/B0/x" and content_type == "application/json"
    assert "migration 0001" in payload["text"] and "finished" in payload["text"]
    assert "12 committed" in payload["text"] and run.run_id in payload["text"]
    assert payload["fsmigrate"]["event"] == "finish"
    assert payload["fsmigrate"]["run"]["run_id"] == run.run_id


def test_a_hanging_webhook_is_reported_and_the_run_goes_on(
    cfg: api.Config, fs_client, receiver: ThreadingHTTPServer, monkeypatch
) -> None:
    seed_items(fs_client, 3)
    receiver.hang = True  # type: ignore[attr-defined]
    port = receiver.server_address[1]
    monkeypatch.setenv("FSMIGRATE_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("FSMIGRATE_HOOK_TIMEOUT", "1")
    monkeypatch.setenv("FSMIGRATE_WEBHOOK_EVENTS", "start,finish")

    result = api.upgrade(cfg)

    assert result.runs[0].status == "succeeded"
    assert [p["fsmigrate"]["event"] for _, _, p in receiver.received] == [  # type: ignore[attr-defined]
        "start",
        "finish",
    ]
    assert any("hook webhook on finish" in w for w in result.warnings)


def test_the_webhook_summary_and_its_settings() -> None:
    run = {
        "run_id": "R1",
        "mode": "apply",
        "revision": "0002",
        "description": "backfill",
        "project": "p",
        "database": "(default)",
        "operator": "alice",
        "host": "h",
        "committed": 5,
        "skipped": 1,
        "planned": 0,
        "error": "stopped by bob@h2 (latency)",
    }
    text = hooks.summary("stop", run)["text"]
    assert "was stopped" in text and "5 committed, 1 skipped" in text and "latency" in text
    assert hooks.webhook_events({"FSMIGRATE_WEBHOOK_EVENTS": "fail"}) == ("fail",)
    with pytest.raises(Exception, match="unknown event"):
        hooks.webhook_events({"FSMIGRATE_WEBHOOK_EVENTS": "sometimes"})
    with pytest.raises(Exception, match="positive"):
        hooks.timeout_from_env({"FSMIGRATE_HOOK_TIMEOUT": "-1"})
    with pytest.raises(ValueError, match="http"):
        hooks.post("file:///etc/passwd", {}, 1.0)
