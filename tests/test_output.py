"""What the tool says, on every path (issue 19): outcome first, one JSON shape per command
with ok / exit_code / error, the emulator host refused before any connection, signals
recorded as interrupted, the right next step, options where a user writes them."""

from __future__ import annotations

import io
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_lock import plant

from fsmigrate import api
from fsmigrate.cli import _Bar, cli
from fsmigrate.errors import UsageError
from fsmigrate.firestore import emulator as emu
from fsmigrate.report.envelope import COMMON, SHAPES
from helpers import Fsm, ops_of, seed_items, write_script

DELETE_FIRST_3 = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") < 3:
            yield ctx.delete(doc)
"""
TOUCH = """
repeatable = True

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"touched": True})
"""
RAISES = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"x": 1})
    raise RuntimeError("bug in the migration")
"""
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def fsm(tmp_path: Path, project_id: str, emulator, fs_client) -> Fsm:
    seed_items(fs_client, 6)
    return Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")


def shaped(command: str, result: Any) -> dict[str, Any]:
    """The command's stdout as its documented JSON shape, checked against its exit code."""
    out = json.loads(result.stdout)
    assert set(out) == set(COMMON) | set(SHAPES[command]), (command, sorted(out))
    assert out["exit_code"] == result.exit_code, result.output
    assert out["ok"] is (result.exit_code == 0)
    if out["ok"]:
        assert out["error"] is None
    else:
        assert set(out["error"]) == {"type", "message"} and out["error"]["message"]
    return out


# ---- one JSON shape per command ------------------------------------------------------------


def test_every_command_keeps_its_json_shape_on_success_nothing_refusal_and_failure(
    fsm: Fsm, fs_client, tmp_path: Path
) -> None:
    j = ("--format", "json")
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    seen: dict[str, set[str]] = {}

    def check(command: str, *args: str, code: int) -> dict[str, Any]:
        result = fsm(*args, *j)
        assert result.exit_code == code, result.output
        out = shaped(command, result)
        seen.setdefault(command, set()).add(
            "ok" if code == 0 else "refused" if not out.get("migrations") else "failed"
        )
        return out

    # upgrade: refusal (unknown revision), dry-run, apply, nothing to do
    assert check("upgrade", "upgrade", "--to", "9999", code=2)["outcome"] is None
    dry = check("upgrade", "upgrade", "--dry-run", code=0)
    assert (dry["mode"], dry["outcome"], dry["actual"]) == ("dry-run", "planned", None)
    assert dry["estimate"] is not None
    done = check("upgrade", "upgrade", code=0)
    assert (done["outcome"], done["estimate"]) == ("applied", None)
    run_id = done["migrations"][0]["run_id"]
    nothing = check("upgrade", "upgrade", "--dry-run", code=0)
    assert (nothing["mode"], nothing["outcome"], nothing["migrations"]) == (
        "dry-run",
        "nothing to do",
        [],
    )
    # upgrade: failure (a migration raises) and refusal (a lease held elsewhere: exit 3)
    write_script(fsm.migrations, "0002", "0001", RAISES)
    failed = check("upgrade", "upgrade", code=1)
    assert failed["outcome"] == "failed" and failed["error"]["type"] == "MigrationFailed"
    assert failed["migrations"][0]["status"] == "failed"
    (fsm.migrations / "0002_test_0002.py").write_text(
        '"""Touch."""\nrevision = "0002"\ndown_revision = "0001"\n' + TOUCH
    )
    plant(fs_client)
    held = check("upgrade", "upgrade", code=3)
    assert (held["outcome"], held["migrations"]) == ("refused", [])
    fs_client.document("_fsmigrate/lock").delete()
    # rerun: refusal (not repeatable), success
    check("rerun", "rerun", "0001", code=2)
    check("rerun", "rerun", "0002", "--dry-run", code=0)
    # apply: a plan, again (refused: already applied), a file that is no plan
    plan = tmp_path / "plan.jsonl"
    wrote = check("rerun", "rerun", "0002", "--dry-run", code=0)
    assert wrote["plan"] is None
    up = fsm("upgrade", "--dry-run", "--plan-out", str(plan), *j)
    assert shaped("upgrade", up)["plan"]["path"] == str(plan)
    applied = check("apply", "apply", str(plan), code=0)
    assert applied["outcome"] == "applied"
    assert check("apply", "apply", str(plan), code=1)["error"]["type"] == "PlanRefused"
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    check("apply", "apply", str(junk), code=1)
    # restore: dry-run, a --doc the run never touched (refused), apply
    check("restore", "restore", run_id, "--dry-run", code=0)
    check("restore", "restore", run_id, "--doc", "items/nope", code=1)
    check("restore", "restore", run_id, code=0)
    # prune: nothing, a dry-run, refused (bad --before)
    check("prune", "prune", "--before", "1d", code=0)
    check("prune", "prune", "--before", "1s", "--dry-run", code=0)
    check("prune", "prune", "--before", "soon", code=2)
    # status, history, verify: success; verify: drift (failure); status: refusal
    check("status", "status", code=0)
    check("history", "history", code=0)
    check("verify", "verify", code=0)
    (fsm.migrations / "0001_test_0001.py").write_text(
        '"""Edited."""\nrevision = "0001"\ndown_revision = None\n' + DELETE_FIRST_3 + "\n# x\n"
    )
    drift = check("verify", "verify", code=1)
    assert drift["findings"] and drift["error"]["type"] == "DriftFound"
    bad = CliRunner().invoke(cli, ["--state", str(fsm.state), "status", *j], env={})
    assert bad.exit_code == 2 and shaped("status", bad)["error"]["type"] == "UsageError"
    assert seen["upgrade"] == {"ok", "refused", "failed"}


def test_text_of_a_failure_never_says_success(fsm: Fsm, fs_client) -> None:
    write_script(fsm.migrations, "0001", None, RAISES)
    write_script(fsm.migrations, "0002", "0001", DELETE_FIRST_3)
    failed = fsm("upgrade")
    assert failed.exit_code == 1
    assert failed.stdout.startswith("FAILED (upgrade; 0 of 1 migration finished)")
    assert "up to date" not in failed.stdout and "APPLIED" not in failed.stdout
    assert len(failed.stderr.strip().splitlines()) == 1
    dry = fsm("upgrade", "--dry-run")
    assert dry.stdout.startswith("FAILED (dry-run;") and "To apply" not in dry.stdout
    plant(fs_client)
    held = fsm("upgrade")
    assert held.exit_code == 3 and held.stdout == ""  # refused: said once, on stderr
    assert held.stderr.count("FAILED") == 1


# ---- the emulator host ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["10.0.0.5:8080", "firestore.example.com:443", "8080", ""])
def test_a_non_loopback_emulator_host_is_refused(host: str) -> None:
    if not host:
        emu.check_emulator_host(host)  # unset: the real service
        return
    with pytest.raises(UsageError, match="FIRESTORE_EMULATOR_HOST"):
        emu.check_emulator_host(host)


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:9", "[::1]:8080"])
def test_a_loopback_emulator_host_passes(host: str) -> None:
    emu.check_emulator_host(host)


@pytest.mark.parametrize(
    "args",
    [
        ["upgrade"],
        ["upgrade", "--dry-run"],
        ["status"],
        ["verify"],
        ["history"],
        ["break-lock"],
        ["doctor"],
        ["check", "heartbeats"],
        ["stamp", "0001", "--reason", "x"],
        ["emulator", "status"],
    ],
)
def test_every_command_refuses_a_remote_emulator_host_before_connecting(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import google.cloud.firestore as firestore_module

    def no_connection(*a: Any, **k: Any) -> Any:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(firestore_module, "Client", no_connection)
    monkeypatch.setattr(socket, "create_connection", no_connection)
    write_script(tmp_path / "m", "0001", None, DELETE_FIRST_3)
    result = CliRunner().invoke(
        cli,
        ["--project", "p", "--state", str(tmp_path / "s.db"), "--migrations", str(tmp_path / "m")]
        + args,
        env={"FIRESTORE_EMULATOR_HOST": "10.1.2.3:8080"},
    )
    assert result.exit_code == 2, result.output
    assert "FIRESTORE_EMULATOR_HOST='10.1.2.3:8080'" in result.stderr
    assert "not a loopback address" in result.stderr


def test_emulator_status_finds_the_emulator_by_its_env_host(
    emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host_port)
    record = tmp_path / "elsewhere" / "emulator.json"
    result = CliRunner().invoke(cli, ["emulator", "status", "--record", str(record)])
    assert result.exit_code == 0 and "running" in result.stdout
    assert emulator.host_port in result.stdout


# ---- signals ---------------------------------------------------------------------------------

SIGNALLED = """
import os, signal

def plan(ctx):
    for i, doc in enumerate(ctx.scan("items")):
        if i == 4 and not os.path.exists(os.environ["FSM_SIGNALLED"]):
            open(os.environ["FSM_SIGNALLED"], "w").close()
            os.kill(os.getpid(), int(os.environ["FSM_SIGNAL"]))
        yield ctx.update(doc, {"seen": ctx.project})
"""


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_records_the_run_interrupted_and_the_same_command_resumes(
    fsm: Fsm, fs_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int, code: int
) -> None:
    monkeypatch.setenv("FSM_SIGNALLED", str(tmp_path / "signalled"))
    monkeypatch.setenv("FSM_SIGNAL", str(int(sig)))
    write_script(fsm.migrations, "0001", None, SIGNALLED)

    stopped = fsm("upgrade", "--batch-size", "2")

    assert stopped.exit_code == code, stopped.output
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INTERRUPTED: stopped by ")
    committed = int(re.search(r"(\d+) operations committed", lines[0])[1])
    assert "run the same command again to resume" in lines[0]
    assert stopped.stdout.startswith("INTERRUPTED (upgrade; 0 of 1 migration finished)")
    run = fsm.json("history")["runs"][0]
    assert (run["status"], run["error_kind"]) == ("interrupted", "interrupted")
    assert run["committed"] == committed and 0 < committed < 6
    assert fsm.json("status")["revisions"][0]["state"] == "interrupted"

    again = fsm("upgrade", "--batch-size", "2")

    assert again.exit_code == 0, again.output
    done = ops_of(fsm.state, status="committed")
    assert sorted(op["path"] for op in done) == [f"items/i{i:05d}" for i in range(6)]


def test_json_of_an_interrupted_run(
    fsm: Fsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSM_SIGNALLED", str(tmp_path / "signalled"))
    monkeypatch.setenv("FSM_SIGNAL", str(int(signal.SIGINT)))
    write_script(fsm.migrations, "0001", None, SIGNALLED)
    result = fsm("upgrade", "--batch-size", "2", "--format", "json")
    out = shaped("upgrade", result)
    assert (out["outcome"], out["exit_code"]) == ("interrupted", 130)


# ---- status, history, restore ---------------------------------------------------------------


def test_history_tells_a_restore_dry_run_and_fits_100_columns(fsm: Fsm) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    run_id = fsm.json("upgrade")["migrations"][0]["run_id"]
    assert fsm("restore", run_id, "--dry-run").exit_code == 0
    text = fsm("history").stdout.splitlines()
    assert all(len(line) <= 100 for line in text), text
    assert re.search(r"\brestore\s+dry-run\b", text[1])
    status = fsm("status").stdout.splitlines()
    assert all(len(line) <= 100 for line in status), status


def test_restore_warns_and_asks_before_recreating_what_a_later_run_deleted(fsm: Fsm) -> None:
    update = 'def plan(ctx):\n    for doc in ctx.scan("items"):\n        yield ctx.update(doc, {"v": 1})\n'
    write_script(fsm.migrations, "0001", None, update)
    write_script(fsm.migrations, "0002", "0001", DELETE_FIRST_3)
    first = fsm.json("upgrade", "--to", "0001")["migrations"][0]["run_id"]
    later = fsm.json("upgrade")["migrations"][0]["run_id"]

    declined = fsm("restore", first, input="n\n")

    assert declined.exit_code == 1
    assert f"run {later}" in declined.stderr and "deleted or moved 3" in declined.stderr
    assert "Restore them anyway?" in declined.stderr
    dry = fsm("restore", first, "--dry-run")
    assert dry.exit_code == 0 and "WARNING: 3 of the documents to restore" in dry.stderr
    assert fsm("restore", first, "--yes").exit_code == 0


@pytest.mark.parametrize("doc", ["items/nope", "/items/nope"])
def test_restore_refuses_a_doc_the_run_did_not_change(fsm: Fsm, doc: str) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    run_id = fsm.json("upgrade")["migrations"][0]["run_id"]
    result = fsm("restore", run_id, "--doc", doc)
    assert result.exit_code == 1
    assert f"run {run_id} did not change items/nope" in result.stderr
    ok = fsm("restore", run_id, "--doc", "/items/i00000")  # a leading slash is the same path
    assert ok.exit_code == 0 and "committed 1," in ok.stdout


# ---- next steps, plans ----------------------------------------------------------------------


def test_one_next_step_after_a_dry_run_and_a_plan_out(fsm: Fsm, tmp_path: Path) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    dry = fsm("upgrade", "--dry-run")
    assert dry.stdout.rstrip().splitlines()[-1] == "To apply: the same command without --dry-run"
    plan = tmp_path / "p.jsonl"
    out = fsm("upgrade", "--dry-run", "--plan-out", str(plan))
    assert out.stdout.rstrip().splitlines()[-1] == f"To apply this plan: fsmigrate apply {plan}"
    assert "without --dry-run" not in out.stdout and "apply it with" not in out.stderr
    assert "in 1 batch\n" in fsm("apply", str(plan)).stdout


def test_every_plan_refusal_exits_1_with_a_next_step(
    fsm: Fsm, tmp_path: Path, project_id: str
) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    plan = tmp_path / "p.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan)).exit_code == 0
    other = Fsm("other-" + project_id, fsm.state, fsm.migrations)("apply", str(plan))
    assert other.exit_code == 1 and f"--project {project_id}" in other.stderr
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{not json\n")
    bad = fsm("apply", str(junk))
    assert bad.exit_code == 1 and "fsmigrate upgrade --dry-run --plan-out" in bad.stderr
    assert fsm("apply", str(plan)).exit_code == 0
    again = fsm("apply", str(plan))
    assert again.exit_code == 1 and "already applied" in again.stderr


# ---- options ---------------------------------------------------------------------------------


def test_global_options_after_the_command(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed_items(fs_client, 4)
    write_script(tmp_path / "m", "0001", None, DELETE_FIRST_3)
    args = ["--state", str(tmp_path / "s.db"), "--migrations", str(tmp_path / "m")]
    result = CliRunner().invoke(
        cli, ["upgrade", "--dry-run", "--project", project_id, *args, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["project"] == project_id
    mixed = CliRunner().invoke(cli, ["--project", "x", "status", f"--project={project_id}", *args])
    assert mixed.exit_code == 0 and project_id in mixed.stdout
    helped = CliRunner().invoke(cli, ["upgrade", "--help", "--project", "p"])
    assert helped.exit_code == 0 and "Run the pending migrations" in helped.stdout


def test_a_state_file_in_a_missing_directory_is_refused_unless_asked(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    write_script(tmp_path / "m", "0001", None, DELETE_FIRST_3)
    state = tmp_path / "typo" / "dir" / "state.db"
    args = ["--project", project_id, "--state", str(state), "--migrations", str(tmp_path / "m")]
    refused = CliRunner().invoke(cli, [*args, "upgrade", "--dry-run"])
    assert refused.exit_code == 2 and "--create-state-dir" in refused.stderr
    assert not state.parent.exists()
    made = CliRunner().invoke(cli, [*args, "--create-state-dir", "upgrade", "--dry-run"])
    assert made.exit_code == 0 and state.exists()


# ---- readability -----------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.expected: list[tuple[int, str]] = []
        self.reads = 0
        self.wants_total = True

    def start(self, script: Any, mode: str) -> None:
        pass

    def expect(self, total: int, unit: str) -> None:
        self.expected.append((total, unit))

    def read(self, n: int) -> None:
        self.reads += n

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


def test_progress_knows_the_total_from_a_count_and_from_a_plan(
    fsm: Fsm, project_id: str, tmp_path: Path
) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    cfg = api.Config(project=project_id, state=fsm.state, migrations=fsm.migrations)
    seen = Recorder()
    plan = tmp_path / "p.jsonl"
    api.upgrade(cfg, dry_run=True, plan_out=plan, progress=seen)
    assert seen.expected == [(6, "doc")] and seen.reads == 6
    applying = Recorder()
    api.apply_plan(cfg, plan, progress=applying)
    assert applying.expected == [(3, "op")]


def test_the_bar_shows_total_percentage_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = _Bar(quiet=False)
    bar.disable = False

    class Script:
        revision = "0001"

    bar.start(Script(), "apply")
    bar.expect(200, "doc")
    bar.read(100)
    bar.advance(40)
    bar.limit(400)
    bar.bar.refresh()
    bar.finish()
    shown = err.getvalue()
    assert "100/200" in shown and "50%" in shown and "40 ops, limit 400 ops/s" in shown


NOTES = """
def plan(ctx):
    for i in range(100):
        ctx.note(f"note {i}")
    return []
"""


def test_notes_are_summarised_in_text_and_all_in_json(fsm: Fsm) -> None:
    write_script(fsm.migrations, "0001", None, NOTES)
    text = fsm("upgrade", "--dry-run").stdout
    assert text.count("note: note ") == 30 and "... and 70 more notes" in text
    out = fsm.json("upgrade", "--dry-run")
    assert len(out["migrations"][0]["notes"]) == 100


def test_times_are_rfc3339_utc_z(fsm: Fsm, project_id: str, tmp_path: Path) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_FIRST_3)
    fsm.json("upgrade")
    elsewhere = Fsm(project_id, tmp_path / "other.db", fsm.migrations)  # from the marker
    for row in [*fsm.json("status")["revisions"], *elsewhere.json("status")["revisions"]]:
        assert RFC3339.match(row["applied_at"]), row
    run = fsm.json("history")["runs"][0]
    assert RFC3339.match(run["started_at"]) and RFC3339.match(run["finished_at"])


RENAME = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.rename(doc, "u_" + doc.id)
"""


def test_the_audit_of_a_plain_rename_is_headed_as_a_rename(fsm: Fsm) -> None:
    write_script(fsm.migrations, "0001", None, RENAME)
    run_id = fsm.json("upgrade")["migrations"][0]["run_id"]
    page = fsm("audit", run_id, "--format", "markdown").stdout
    assert "## Renamed documents" in page and "6 documents renamed" in page
    assert "Merged into canonical documents" not in page
    assert "fsmigrate `" in page  # the version as code, not `0\\.1.0`
