"""The pytest plugin (`fsmigrate.testing`) as a team uses it: a throwaway project of its own,
run with `pytest` in a subprocess (the plugin found through its entry point), and the
harness and built-in tests in-process, against the real emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fsmigrate.errors import UsageError
from fsmigrate.firestore import emulator as emu_mod
from fsmigrate.testing import checks, running_emulator
from fsmigrate.testing.guard import ClientWriteError

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "howto" / "testing.md",
    ROOT / "docs" / "tutorial.md",
]
GOOD = '''
"""Give every item a status."""
revision = "0001"
down_revision = None
repeatable = True


def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("status") is None:
            yield ctx.update(doc, {"status": "active"})
'''
WRITES_IN_PLAN = '''
"""Give every item a status, and mark it seen behind fsmigrate's back."""
revision = "0001"
down_revision = None


def plan(ctx):
    for doc in ctx.scan("items"):
        doc.reference.update({"seen": True})
        yield ctx.update(doc, {"status": "active"})
'''
NOT_IDEMPOTENT = '''
"""Count every run on every item."""
revision = "0001"
down_revision = None
repeatable = True


def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n", 0) + 1})
'''
DIFFERS = '''
"""Record an audit entry per item, under a random id."""
import uuid

revision = "0001"
down_revision = None


def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.create(f"audit/{uuid.uuid4().hex}", {"item": doc.id})
'''
SEED = """
import pytest


@pytest.fixture
def fsmigrate_seed():
    return {"items": {"a": {"n": 1}, "b": {"n": 2, "status": "retired"}}}
"""
BUILT_INS = (
    "from fsmigrate.testing.checks import (test_dry_run_matches_apply, "
    "test_plan_never_writes,\n    test_repeatable_is_idempotent, test_single_head)\n"
)
OVERRIDE = """
import pathlib

import pytest


@pytest.fixture
def fsmigrate_migrations():
    return pathlib.Path(__file__).parent / "{name}"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def run_pytest(project: Path) -> tuple[subprocess.CompletedProcess, dict[str, tuple[str, str]]]:
    """`pytest` in the project (the emulator of this session, through
    FIRESTORE_EMULATOR_HOST); each test's (outcome, message) from its JUnit report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FSMIGRATE_SKIP"))}
    report = project / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").rpartition(".")[2]
        found = [
            (child.tag, child.get("message", ""))
            for child in case
            if child.tag in ("failure", "error", "skipped")
        ]
        outcomes[f"{module}::{case.get('name')}"] = found[0] if found else ("passed", "")
    return done, outcomes


def readme_block(start: str) -> str:
    """The code block of the docs (README, the testing guide, the tutorial) that starts
    with `start`."""
    text = "\n".join(page.read_text() for page in DOC_PAGES)
    blocks = re.findall(r"```(?:python|ini)\n(.*?)```", text, re.DOTALL)
    return next(block for block in blocks if block.startswith(start))


def test_the_readmes_example_project_passes(tmp_path: Path, emulator) -> None:
    """The docs' pytest.ini, migration and test file, with a repeatable second migration."""
    project = tmp_path / "team"
    write(project / "pytest.ini", readme_block("# pytest.ini"))
    write(
        project / "migrations" / "0001_delete_expired_sessions.py",
        readme_block('"""Delete login sessions'),
    )
    write(
        project / "migrations" / "0002_item_status.py",
        GOOD.replace('"0001"', '"0002"').replace("down_revision = None", 'down_revision = "0001"'),
    )
    write(project / "tests" / "test_migrations.py", readme_block("# tests/test_migrations.py"))

    done, outcomes = run_pytest(project)

    assert done.returncode == 0, done.stdout + done.stderr
    assert outcomes == {
        f"test_migrations::{name}": ("passed", "")
        for name in [*checks.__all__, "test_expired_sessions_are_deleted"]
    }


def test_a_team_project_fails_clearly_for_each_kind_of_bad_migration(
    tmp_path: Path, emulator
) -> None:
    project = tmp_path / "team"
    write(project / "pytest.ini", "[pytest]\n")
    write(project / "conftest.py", SEED)
    for name, source in (
        ("writes", WRITES_IN_PLAN),
        ("counts", NOT_IDEMPOTENT),
        ("differs", DIFFERS),
    ):
        write(project / name / "0001_items.py", source)
        write(project / f"test_{name}.py", BUILT_INS + OVERRIDE.replace("{name}", name))

    done, outcomes = run_pytest(project)

    assert done.returncode == 1, done.stdout + done.stderr
    outcome, message = outcomes["test_writes::test_plan_never_writes"]
    assert outcome == "failure"
    assert f"{project / 'writes' / '0001_items.py'}:8 " in message
    assert 'doc.reference.update({"seen": True})' in message
    assert "writes to Firestore through the client" in message
    outcome, message = outcomes["test_counts::test_repeatable_is_idempotent"]
    assert outcome == "failure"
    assert (
        "migration 0001 (0001_items.py) is repeatable, but run again right after it was "
        "applied it plans 2 operations: update items/a, update items/b" in message
    )
    outcome, message = outcomes["test_differs::test_dry_run_matches_apply"]
    assert outcome == "failure"
    assert "the dry-run planned 2 operations, the apply committed 2" in message
    assert "only in the dry-run: create audit/" in message
    assert "only in the apply: create audit/" in message
    # each bad migration fails the test about its fault, not the others
    assert outcomes["test_counts::test_dry_run_matches_apply"] == ("passed", "")
    assert outcomes["test_counts::test_plan_never_writes"] == ("passed", "")
    assert outcomes["test_differs::test_plan_never_writes"] == ("passed", "")
    assert outcomes["test_differs::test_repeatable_is_idempotent"][0] == "skipped"
    assert all(
        outcomes[f"test_{n}::test_single_head"] == ("passed", "")
        for n in ("writes", "counts", "differs")
    )


# ---- the harness and the built-in tests, in-process -------------------------------------------


@pytest.fixture
def fsmigrate_migrations(tmp_path: Path) -> Path:
    return tmp_path / "migrations"


def test_a_client_write_is_refused_with_its_file_and_line_even_when_the_plan_catches_it(
    fsmigrate, fsmigrate_migrations: Path
) -> None:
    script = write(
        fsmigrate_migrations / "0001_items.py",
        '''
        """Mark items seen behind fsmigrate's back, and hide the failure."""
        revision = "0001"
        down_revision = None


        def plan(ctx):
            for doc in ctx.scan("items"):
                try:
                    doc.reference.update({"seen": True})
                except Exception:
                    pass
                yield ctx.update(doc, {"n": 2})
    ''',
    )
    fsmigrate.seed("items", {"a": {"n": 1}})

    with pytest.raises(ClientWriteError) as dry:
        fsmigrate.upgrade(dry_run=True)
    with pytest.raises(ClientWriteError) as applied:
        fsmigrate.upgrade()

    for caught in (dry, applied):
        assert caught.value.sites[0].line == 9
        assert str(caught.value).startswith(
            f'{script}:9 (`doc.reference.update({{"seen": '
            "True})`) writes to Firestore through the client"
        )
    assert fsmigrate.docs("items") == {"a": {"n": 2}}  # the apply's own write, not the client's


def test_a_write_the_guard_cannot_see_is_caught_by_the_snapshot(
    fsmigrate, fsmigrate_migrations: Path
) -> None:
    write(
        fsmigrate_migrations / "0001_items.py",
        '''
        """Write from a pool thread, where no frame of this file is on the stack."""
        from concurrent.futures import ThreadPoolExecutor

        revision = "0001"
        down_revision = None


        def plan(ctx):
            with ThreadPoolExecutor(1) as pool:
                for doc in ctx.scan("items"):
                    pool.submit(doc.reference.update, {"seen": True}).result()
            yield from ()
    ''',
    )

    with pytest.raises(
        pytest.fail.Exception,
        match=r"the dry-run of migration 0001 \(0001_items.py\) wrote to "
        r"Firestore: changed items/a",
    ):
        checks.test_plan_never_writes(fsmigrate, {"items": {"a": {"n": 1}}})


def test_a_plan_that_depends_on_ctx_dry_run_fails_dry_run_matches_apply(
    fsmigrate, fsmigrate_migrations: Path
) -> None:
    write(
        fsmigrate_migrations / "0001_items.py",
        '''
        """Shows less in the dry-run than it does."""
        revision = "0001"
        down_revision = None


        def plan(ctx):
            for doc in ctx.scan("items"):
                if not ctx.dry_run or doc.id == "a":
                    yield ctx.delete(doc)
    ''',
    )
    seed = {"items": {"a": {"n": 1}, "b": {"n": 2}}}

    with pytest.raises(pytest.fail.Exception) as failed:
        checks.test_dry_run_matches_apply(fsmigrate, seed)

    assert "the dry-run planned 1 operations, the apply committed 2" in str(failed.value)
    assert "only in the apply: delete items/b" in str(failed.value)
    assert "only in the dry-run" not in str(failed.value)


def test_plan_lists_a_revisions_operations_when_it_can_be_planned(
    fsmigrate, fsmigrate_migrations: Path
) -> None:
    write(fsmigrate_migrations / "0001_status.py", GOOD)
    write(
        fsmigrate_migrations / "0002_drop.py",
        '''
        """Delete retired items."""
        revision = "0002"
        down_revision = "0001"


        def plan(ctx):
            for doc in ctx.scan("items"):
                if doc.get("status") == "retired":
                    yield ctx.delete(doc)
    ''',
    )
    fsmigrate.seed_all(lambda h: h.seed("items", {"a": {}, "b": {"status": "retired"}}))

    with pytest.raises(UsageError, match=r"revision\(s\) 0001 come before 0002"):
        fsmigrate.plan("0002")
    assert fsmigrate.plan("0001") == [("update", "items/a")]
    fsmigrate.upgrade(to="0001")
    assert fsmigrate.plan("0001") == []  # applied and repeatable: planned as a rerun
    assert fsmigrate.plan("0002") == [("delete", "items/b")]
    fsmigrate.upgrade()
    with pytest.raises(UsageError, match="already applied and not repeatable"):
        fsmigrate.plan("0002")
    assert fsmigrate.docs("items") == {"a": {"status": "active"}}


def test_repeatable_is_idempotent_skips_when_no_migration_is_repeatable(
    fsmigrate, fsmigrate_migrations: Path
) -> None:
    write(fsmigrate_migrations / "0001_items.py", DIFFERS)
    with pytest.raises(pytest.skip.Exception, match="no migration in .* is repeatable"):
        checks.test_repeatable_is_idempotent(fsmigrate, {})


def test_single_head_fails_with_the_loaders_message(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    write(migrations / "0001_a.py", GOOD)
    checks.test_single_head(migrations)  # passes
    write(
        migrations / "0002_b.py",
        GOOD.replace('"0001"', '"0002"', 1).replace(
            "down_revision = None", 'down_revision = "0001"'
        ),
    )
    write(
        migrations / "0003_c.py",
        GOOD.replace('"0001"', '"0003"', 1).replace(
            "down_revision = None", 'down_revision = "0001"'
        ),
    )
    with pytest.raises(pytest.fail.Exception, match=r"2 heads \(0002, 0003\)"):
        checks.test_single_head(migrations)
    (migrations / "0003_c.py").rename(migrations / "0003-c.py")
    with pytest.raises(pytest.fail.Exception, match="0003-c.py is not a migration script name"):
        checks.test_single_head(migrations)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(pytest.fail.Exception, match="no migration scripts in"):
        checks.test_single_head(empty)


def test_the_emulator_at_firestore_emulator_host_must_be_loopback_and_answer() -> None:
    silent = f"127.0.0.1:{emu_mod.free_port()}"
    with pytest.raises(
        pytest.fail.Exception, match=f"FIRESTORE_EMULATOR_HOST={silent} does not answer"
    ):
        running_emulator(silent)
    with pytest.raises(pytest.fail.Exception, match="is not a loopback address"):
        running_emulator("10.1.2.3:8080")
