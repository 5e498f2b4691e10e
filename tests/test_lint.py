"""`fsmigrate lint`: each rule on a failing example and the same example silenced on its
line; the command's formats and exit codes; the project's own migrations pass; the README
documents every code. Pure static checks: no emulator."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsmigrate import api
from fsmigrate.cli import cli
from fsmigrate.lint import RULES, lint_paths, lint_source

ROOT = Path(__file__).resolve().parent.parent
HEADER = '"""Tidy items."""\nrevision = "0001"\ndown_revision = None\n\n'


def script(body: str, header: str = HEADER) -> str:
    return header + textwrap.dedent(body).lstrip("\n")


def codes(source: str, name: str = "0001_items.py") -> list[tuple[str, int]]:
    found, _ = lint_source(source, name)
    return [(f.code, f.line) for f in found]


# (code, source, the line it must be reported on); every one is silenced below
FAILING = [
    (
        "FSM101",
        script("""
        def plan(ctx):
            for doc in ctx.scan("items"):
                doc.reference.update({"seen": True})
            yield from ()
        """),
        7,
    ),
    (
        "FSM101",
        script("""
        def plan(ctx):
            batch = ctx.get("items/a").reference._client.batch()
            yield from ()
        """),
        6,
    ),
    (
        "FSM101",
        script("""
        def plan(ctx):
            ref = ctx.get("items/a").reference
            ref.set({"a": 1})
            yield from ()
        """),
        7,
    ),
    (
        "FSM101",
        script("""
        from google.cloud import firestore


        @firestore.transactional
        def bump(transaction, ref):
            pass


        def plan(ctx):
            yield from ()
        """),
        8,
    ),
    (
        "FSM102",
        script("""
        from google.cloud import firestore


        def plan(ctx):
            client = firestore.Client(project=ctx.project)
            yield from ()
        """),
        9,
    ),
    (
        "FSM102",
        script("""
        from google.cloud.firestore_v1.client import Client as C


        def plan(ctx):
            yield from ()


        CLIENT = C()
        """),
        12,
    ),
    (
        "FSM201",
        script("""
        def plan(ctx):
            for doc in ctx.scan("sessions"):
                yield ctx.delete(doc)
        """),
        7,
    ),
    (
        "FSM201",
        script("""
        def plan(ctx):
            docs = ctx.scan("sessions", where=())
            for doc in docs:
                ctx.note(doc.id)
                yield ctx.delete(doc)
        """),
        9,
    ),
    (
        "FSM201",
        script("""
        def plan(ctx):
            yield from (ctx.delete(d) for d in ctx.scan("sessions", group=True))
        """),
        6,
    ),
    (
        "FSM201",
        script("""
        from fsmigrate.distributed import scan

        source = scan("sessions")


        def each(ctx, doc):
            yield ctx.delete(doc)
        """),
        11,
    ),
    (
        "FSM301",
        script("""
        def plan(ctx):
            return [ctx.delete(doc) for doc in ctx.scan("items") if doc.get("old")]
        """),
        5,
    ),
    (
        "FSM301",
        script("""
        async def plan(ctx):
            yield None
        """),
        5,
    ),
    (
        "FSM301",
        script("""
        def migrate(ctx):
            yield from ()
        """),
        1,
    ),
    (
        "FSM302",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='revision = "0001"\ndown_revision = None\n',
        ),
        1,
    ),
    (
        "FSM303",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='"""Tidy."""\nrevision = "0002"\ndown_revision = None\n',
        ),
        2,
    ),
    (
        "FSM303",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='"""Tidy."""\nrevision = 1\ndown_revision = None\n',
        ),
        2,
    ),
    (
        "FSM303",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='"""Tidy."""\ndown_revision = None\n',
        ),
        1,
    ),
    (
        "FSM304",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='"""Tidy."""\nrevision = "0001"\ndown_revision = "00" + "00"\n',
        ),
        3,
    ),
    (
        "FSM304",
        script(
            """
        def plan(ctx):
            yield from ()
        """,
            header='"""Tidy."""\nrevision = "0001"\n',
        ),
        1,
    ),
    (
        "FSM401",
        script("""
        import uuid


        def plan(ctx):
            yield ctx.create(f"audit/{uuid.uuid4().hex}", {})
        """),
        9,
    ),
    (
        "FSM401",
        script("""
        import datetime as dt


        def plan(ctx):
            cutoff = dt.datetime.now(dt.timezone.utc)
            for doc in ctx.scan("sessions"):
                if doc.get("expires") < cutoff:
                    yield ctx.delete(doc)
        """),
        9,
    ),
    (
        "FSM401",
        script("""
        from random import choice


        def plan(ctx):
            for doc in ctx.scan("items"):
                yield ctx.update(doc, {"shard": choice("abc")})
        """),
        10,
    ),
    (
        "FSM401",
        script("""
        import time


        def plan(ctx):
            for doc in ctx.scan("items"):
                yield ctx.update(doc, {"at": time.time()})
        """),
        10,
    ),
]


@pytest.mark.parametrize(
    "code, source, line", FAILING, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(FAILING)]
)
def test_each_rule_fails_its_example_and_is_silenced_on_its_line(
    code: str, source: str, line: int
) -> None:
    assert (code, line) in codes(source)
    lines = source.splitlines()
    lines[line - 1] += f"  # fsmigrate: allow {code}"
    silenced = "\n".join(lines) + "\n"

    found, count = lint_source(silenced, "0001_items.py")

    assert (code, line) not in [(f.code, f.line) for f in found]
    assert count >= 1
    assert "FSM002" not in [f.code for f in found]


@pytest.mark.parametrize(
    "body",
    [
        # data methods that share a name with a client write
        'def plan(ctx):\n    data = {}\n    data.update({"a": 1})\n    seen = set()\n    '
        'seen.add(1)\n    for doc in ctx.scan("x"):\n        d = doc.to_dict()\n        '
        'd.update({"b": 2})\n        yield ctx.update(doc, d)\n',
        # sentinels of the client module are fine; so is a seeded generator and a fixed time
        "import datetime as dt\nimport random\nimport uuid\nfrom google.cloud import firestore\n\n"
        "RNG = random.Random(7)\nCUTOFF = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)\n\n"
        'def plan(ctx):\n    for doc in ctx.scan("x"):\n        yield ctx.update(doc, {"old": '
        'firestore.DELETE_FIELD, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, doc.id)), '
        '"s": RNG.random()})\n',
        # a delete under a condition, after a skip, with a filter, or in a filtered comprehension
        'def plan(ctx):\n    for doc in ctx.scan("s"):\n        if doc.get("old"):\n'
        "            yield ctx.delete(doc)\n",
        'def plan(ctx):\n    for doc in ctx.scan("s"):\n        if doc.get("keep"):\n'
        "            continue\n        yield ctx.delete(doc)\n",
        'def plan(ctx):\n    for doc in ctx.scan("s", where=[("old", "==", True)]):\n'
        "        yield ctx.delete(doc)\n",
        'def plan(ctx):\n    yield from (ctx.delete(d) for d in ctx.scan("s") if d.get("old"))\n',
        'def plan(ctx):\n    for doc in ctx.scan("s"):\n'
        '        yield ctx.delete(doc) if doc.get("old") else ctx.note("kept")\n',
    ],
)
def test_what_is_not_a_finding(body: str) -> None:
    assert codes(HEADER + body) == []


def test_a_syntax_error_is_reported_and_cannot_be_silenced() -> None:
    broken = HEADER + "def plan(ctx):\n    yield (\n"
    assert [c for c, _ in codes(broken)] == ["FSM001"]
    assert [
        c for c, _ in codes(broken.replace("yield (", "yield (  # fsmigrate: allow FSM001"))
    ] == ["FSM001"]


def test_allow_comments_that_silence_nothing_or_name_no_rule_are_warned() -> None:
    source = script("""
        def plan(ctx):  # fsmigrate: allow FSM401
            yield from ()  # fsmigrate: allow FSM999
        x = "# fsmigrate: allow FSM101"
        """)
    found, silenced = lint_source(source, "0001_items.py")
    assert [(f.code, f.line) for f in found] == [("FSM002", 5), ("FSM002", 6)]
    assert "silences nothing" in found[0].message and "FSM999" in found[1].message
    assert silenced == 0


def test_a_directory_is_read_like_the_loader_reads_it(tmp_path: Path) -> None:
    (tmp_path / "0001_items.py").write_text(script("def plan(ctx):\n    yield from ()\n"))
    (tmp_path / "_helpers.py").write_text("import uuid\n\nKEY = uuid.uuid4()\n")
    (tmp_path / "1_bad.py").write_text(script("def plan(ctx):\n    yield from ()\n"))
    (tmp_path / "notes.txt").write_text("import random; random.random()\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0009_x.py").write_text("broken(")
    (tmp_path / "ran").mkdir()
    (tmp_path / "0002_more.py").write_text(
        script(
            f"open({str(tmp_path / 'ran' / 'x')!r}, 'w')\n\ndef plan(ctx):\n    yield from ()\n",
            header='"""More."""\nrevision = "0002"\ndown_revision = "0001"\n\n',
        )
    )

    report = lint_paths([tmp_path])

    assert report.files == 4  # two scripts, a misnamed one, a helper
    assert sorted((Path(f.path).name, f.code) for f in report.findings) == [
        ("1_bad.py", "FSM303"),
        ("_helpers.py", "FSM401"),
    ]  # helpers: code rules only
    assert not list((tmp_path / "ran").iterdir())  # nothing was imported or run


def test_the_chain_is_checked_across_a_directory(tmp_path: Path) -> None:
    for rev, down in (("0001", "None"), ("0002", '"0001"'), ("0003", '"0001"')):
        (tmp_path / f"{rev}_x.py").write_text(
            script(
                "def plan(ctx):\n    yield from ()\n",
                header=f'"""Doc."""\nrevision = "{rev}"\ndown_revision = {down}\n\n',
            )
        )

    found = lint_paths([tmp_path]).findings

    assert [(Path(f.path).name, f.line, f.code) for f in found] == [("0002_x.py", 3, "FSM305")]
    assert "2 heads (0002, 0003)" in found[0].message
    third = tmp_path / "0003_x.py"
    third.write_text(third.read_text().replace('down_revision = "0001"', 'down_revision = "0002"'))
    assert lint_paths([tmp_path]).findings == []


# ---- the command ------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No project, no emulator, no credentials: lint needs none."""
    for var in (
        "FIRESTORE_EMULATOR_HOST",
        "FSMIGRATE_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(var, raising=False)


def test_lint_exits_1_on_errors_0_on_warnings_with_file_line_messages(
    tmp_path: Path, offline: None
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    first = migrations / "0001_items.py"
    first.write_text(FAILING[-1][1])  # a warning only (time.time)

    warned = CliRunner().invoke(cli, ["--migrations", str(migrations), "lint"])

    assert warned.exit_code == 0, warned.output
    assert (
        warned.stdout.splitlines()[0].startswith(f"{first}:10:")
        and " FSM401 warning: `time.time()` differs from run to run" in warned.stdout
    )
    assert warned.stdout.splitlines()[-1] == "1 file checked: 0 errors, 1 warning"

    (migrations / "0002_drop.py").write_text(
        script(
            'def plan(ctx):\n    for doc in ctx.scan("s"):\n        yield ctx.delete(doc)\n',
            header='"""Drop."""\nrevision = "0002"\ndown_revision = "0001"\n\n',
        )
    )
    failed = CliRunner().invoke(cli, ["--migrations", str(migrations), "lint", "--format", "json"])

    assert failed.exit_code == 1
    out = json.loads(failed.stdout)
    assert (out["files"], out["errors"], out["warnings"]) == (2, 1, 1)
    error = next(f for f in out["findings"] if f["severity"] == "error")
    assert error == {
        "path": str(migrations / "0002_drop.py"),
        "line": 7,
        "column": 15,
        "code": "FSM201",
        "name": "delete-every-document",
        "severity": "error",
        "message": error["message"],
    }
    only = CliRunner().invoke(cli, ["lint", str(first)])
    assert only.exit_code == 0 and "1 file checked" in only.stdout
    missing = CliRunner().invoke(cli, ["lint", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and missing.stderr.startswith("FAILED: ")


def test_the_projects_migrations_pass_lint(offline: None) -> None:
    report = api.lint(api.Config(migrations=ROOT / "migrations"))
    assert report.files >= 1
    assert [f"{f.path}:{f.line}: {f.code}" for f in report.findings] == []


def test_ci_runs_lint_before_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "fsmigrate" in ci and " lint" in ci
    assert ci.index(" lint") < ci.index("exec bin/test")


def test_the_docs_document_every_code() -> None:
    """The table is generated from RULES at build time (tests/test_docs.py checks it); the
    page explains each code in a section of its own, and names no code that is gone."""
    page = (ROOT / "docs" / "reference" / "lint-codes.md").read_text()
    assert "<!-- generated: lint-rules -->" in page
    documented = set(re.findall(r"^### (FSM\d{3})$", page, re.MULTILINE))
    assert documented == set(RULES)
