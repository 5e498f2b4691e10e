"""The Python API (`fsmigrate.api`) end to end against the emulator, without the CLI: the
same dry-run, apply, skip-on-change and crash-resume behaviour as the command line."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.errors import FsMigrateError, MigrationFailed, ScriptsChanged, UsageError
from helpers import Fsm, seed_items, write_script
from helpers import items_of as items

DELETE_ODD = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 2:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.done = 0
        self.finished = 0

    def start(self, script, mode: str) -> None:
        self.started.append((script.revision, mode))

    def advance(self, n: int) -> None:
        self.done += n

    def finish(self) -> None:
        self.finished += 1


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator) -> api.Config:
    write_script(tmp_path / "migrations", "0001", None, DELETE_ODD)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def test_dry_run_then_apply_through_the_api(cfg: api.Config, fs_client, capfd) -> None:
    seed_items(fs_client, 1200)
    progress = Recorder()

    dry = api.upgrade(cfg, dry_run=True, progress=progress)

    assert dry.dry_run and [r.mode for r in dry.runs] == ["dry-run"]
    assert (dry.runs[0].planned, dry.runs[0].committed) == (1200, 0)
    assert dry.runs[0].counts == {"create": 0, "delete": 600, "set": 0, "update": 600}
    assert items(fs_client) == {f"i{i:05d}": i for i in range(1200)}  # nothing written
    assert progress.started == [("0001", "dry-run")] and progress.done == 1200
    assert [r.state for r in api.status(cfg).revisions] == ["pending"]

    applied = api.upgrade(cfg, progress=progress)

    run = applied.runs[0]
    assert (run.status, run.mode, run.kind, run.planned, run.committed, run.skipped) == (
        "succeeded",
        "apply",
        "upgrade",
        1200,
        1200,
        0,
    )
    assert run.batches == 3 and applied.committed == 1200
    assert items(fs_client) == {f"i{i:05d}": i + 1000 for i in range(0, 1200, 2)}
    assert [(r.revision, r.state) for r in api.status(cfg).revisions] == [("0001", "applied")]
    assert [r.run_id for r in api.history(cfg)] == [run.run_id, dry.runs[0].run_id]
    assert api.verify(cfg) == []
    assert api.upgrade(cfg).runs == []  # nothing pending: a no-op
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""  # the API never prints


def test_a_document_changed_after_planning_is_skipped_through_the_api(
    cfg: api.Config, fs_client
) -> None:
    seed_items(fs_client, 10)
    write_script(
        cfg.migrations_path,
        "0002",
        "0001",
        """
from google.cloud import firestore

def plan(ctx):
    docs = list(ctx.scan("items"))
    # another writer changes a document between the plan and the commit
    firestore.Client(project=ctx.project).document("items/i00004").update({"n": 4444})
    for doc in docs:
        yield ctx.delete(doc)
""",
    )
    api.upgrade(cfg, to="0001")

    result = api.upgrade(cfg)

    run = result.runs[0]
    assert (run.revision, run.committed, run.skipped) == ("0002", 4, 1)
    assert result.skipped == 1
    assert items(fs_client) == {"i00004": 4444}
    audit = api.audit(cfg, run.run_id)
    assert isinstance(audit, api.RunAudit)
    text = "".join(audit.chunks("text"))
    assert "skipped    items/i00004  (changed since plan)" in text


def test_a_failing_migration_raises_with_what_ran(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 4)
    write_script(
        cfg.migrations_path,
        "0002",
        "0001",
        """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
    raise RuntimeError("boom")
""",
    )
    with pytest.raises(MigrationFailed) as caught:
        api.upgrade(cfg)
    partial = caught.value.partial
    assert [(r.revision, r.status) for r in partial.runs] == [
        ("0001", "succeeded"),
        ("0002", "failed"),
    ]
    assert caught.value.exit_code == 1
    with pytest.raises(UsageError):
        api.rerun(cfg, "0001")  # not repeatable


def test_crash_then_resume_through_the_api(cfg: api.Config, fs_client, tmp_path) -> None:
    seed_items(fs_client, 3000)
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(f"""
        from fsmigrate import api
        cfg = api.Config(project={cfg.project!r}, state={str(cfg.state)!r},
                         migrations={str(cfg.migrations)!r})
        api.upgrade(cfg)
    """)
    )
    killed = subprocess.run(
        [sys.executable, str(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "FSMIGRATE_TEST_CRASH": "after-commit:3"},
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = api.upgrade(cfg)

    run = resumed.runs[0]
    assert run.status == "succeeded" and run.resumes is not None
    assert any(n.startswith("resumes run") for n in run.notes)
    # n + 1000 is not idempotent: each document was changed exactly once
    assert items(fs_client) == {f"i{i:05d}": i + 1000 for i in range(0, 3000, 2)}
    kinds = [(r.mode, r.status) for r in api.history(cfg)]
    assert kinds == [("apply", "succeeded"), ("apply", "interrupted")]


def test_an_apply_to_a_real_project_needs_a_confirm_callback(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    write_script(tmp_path / "migrations", "0001", None, DELETE_ODD)
    cfg = api.Config(
        project="a-real-project", state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )

    with pytest.raises(api.ConfirmationRequired) as caught:
        api.upgrade(cfg)  # refused before anything touches the network

    assert "a-real-project" in str(caught.value) and "confirm=" in str(caught.value)
    with pytest.raises(FsMigrateError, match="declined"):
        api.upgrade(cfg, confirm=lambda prompt: False)


def test_config_takes_the_project_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FSMIGRATE_PROJECT", "from-env")
    assert api.Config().target().project == "from-env"
    monkeypatch.delenv("FSMIGRATE_PROJECT")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-gcloud")
    assert api.Config().target().project == "from-gcloud"
    assert api.Config(project="given").target().project == "given"
    with pytest.raises(UsageError):
        api.Config(markers_collection="a/b")


def test_the_public_surface_is_listed_and_typed() -> None:
    import inspect

    for name in api.__all__:
        assert hasattr(api, name), name
        obj = getattr(api, name)
        if inspect.isfunction(obj):
            hints = inspect.signature(obj)
            assert hints.return_annotation is not inspect.Signature.empty, name
            for param in hints.parameters.values():
                assert param.annotation is not inspect.Parameter.empty, (name, param.name)
    commands = {
        "upgrade",
        "rerun",
        "apply_plan",
        "status",
        "history",
        "verify",
        "audit",
        "stamp",
        "resolve",
        "restore",
        "break_lock",
        "check",
        "new",
    }
    assert commands <= set(api.__all__)


def test_the_cli_is_a_skin_over_the_api() -> None:
    source = Path(api.__file__).with_name("cli.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module or ''}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    engine = {"runner", "lease", "markers", "store", "state", "commands", "planfile"}
    assert not {
        name for name in imported if name.split(".")[-1] in engine or name.split(".")[0] in engine
    }


def test_check_options_are_refused_before_anything_connects(monkeypatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    with pytest.raises(UsageError, match="--window"):
        api.check(api.Config(project="no-credentials-here"), "heartbeats", window="1y")
    with pytest.raises(UsageError, match="no option"):
        api.check(api.Config(project="no-credentials-here"), "heartbeats", colour="red")


def test_check_through_the_api(cfg: api.Config, fs_client) -> None:
    fs_client.document("processor_heartbeats/PlayerGameSummaryProcessor").set({"n": 1})
    fs_client.document("processor_heartbeats/PlayerGameSummaryProcessor_None_0123abcd").set(
        {"n": 1}
    )

    result = api.check(cfg, "heartbeats", max_docs=50)

    assert not result.healthy and "1 legacy-format documents (expected 0)" in result.reasons
    totals = {m.name: m.value for m in result.metrics if not m.labels}
    assert totals["documents"] == 2


def test_a_resume_never_writes_again_a_document_the_interrupted_run_wrote(
    cfg: api.Config, fs_client, tmp_path
) -> None:
    """Re-planned after the crash, an updated document may now look like one to delete
    (n + 1000 is a multiple of 3 for a third of them): the resume must leave it alone."""
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 3 == 0:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": doc.get("n") + 1000})
""",
    )
    seed_items(fs_client, 1500)
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(f"""
        from fsmigrate import api
        cfg = api.Config(project={cfg.project!r}, state={str(cfg.state)!r},
                         migrations={str(cfg.migrations)!r})
        api.upgrade(cfg, api.RunOptions(batch_size=100))
    """)
    )
    killed = subprocess.run(
        [sys.executable, str(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "FSMIGRATE_TEST_CRASH": "after-commit:4"},
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    api.upgrade(cfg, api.RunOptions(batch_size=100))

    assert items(fs_client) == {f"i{i:05d}": i + 1000 for i in range(1500) if i % 3}


def test_runner_beam_without_the_extra_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if it were not installed
    cfg = api.Config(project="p", state=tmp_path / "state.db", migrations=tmp_path)
    with pytest.raises(UsageError, match=r"pip install 'fsmigrate\[beam\]'"):
        api.upgrade(cfg, api.RunOptions(runner="beam"))
    with pytest.raises(UsageError, match="runner must be one of"):
        api.upgrade(cfg, api.RunOptions(runner="spark"))
    assert not (tmp_path / "state.db").exists()


def test_an_edited_repeatable_script_is_run_again_not_refused(
    cfg: api.Config, fs_client, tmp_path
) -> None:
    """A repeatable migration changes with the data it cleans (like migration 0001 gaining
    its distributable form): its new version is not drift; its next run records it."""
    write_script(cfg.migrations_path, "0001", None, "repeatable = True\n" + DELETE_ODD)
    seed_items(fs_client, 10)
    api.upgrade(cfg)
    script = cfg.migrations_path / "0001_test_0001.py"
    script.write_text(script.read_text() + "\n# a later version of the cleanup\n")
    edited = write_script(tmp_path / "other", "0001", None, "\n" + DELETE_ODD)  # not repeatable

    found = api.verify(cfg)

    assert [(f.problem, f.blocking) for f in found] == [("changed (repeatable)", False)]
    fsm = Fsm(cfg.project, cfg.state_path, cfg.migrations_path)
    assert fsm("verify").exit_code == 0 and "its next run" in fsm("verify").stdout
    assert api.upgrade(cfg).runs == []  # not refused: nothing pending
    run = api.rerun(cfg, "0001").runs[0]
    assert run.status == "succeeded" and api.verify(cfg) == []  # the new version recorded
    assert [r.state for r in api.status(cfg).revisions] == ["applied"]  # marker agrees
    strict = api.Config(project=cfg.project, state=cfg.state_path, migrations=edited.parent)
    with pytest.raises(ScriptsChanged):  # a script that is not repeatable still may not change
        api.upgrade(strict)


def test_a_document_deleted_then_created_again_in_one_run_is_not_refused(
    cfg: api.Config, fs_client
) -> None:
    """One commit cannot write a document twice: the second write goes in the next batch,
    after the first landed (regression: the whole run failed with InvalidArgument)."""
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
        yield ctx.create(doc.path, {"n": doc.get("n"), "v": 2})
""",
    )
    seed_items(fs_client, 120)

    run = api.upgrade(cfg, api.RunOptions(batch_size=50, concurrency=4)).runs[0]

    assert (run.status, run.committed, run.skipped) == ("succeeded", 240, 0)
    assert {s.id: (s.get("n"), s.get("v")) for s in fs_client.collection("items").stream()} == {
        f"i{i:05d}": (i, 2) for i in range(120)
    }
