"""Working as a team, against the real emulator: a repository with [tool.fsmigrate]
environments, the CI gate (`status --check`), two branches that both add a migration
(`rebase`, and a target that applied the other branch's script), environments that
always ask for confirmation."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fsmigrate import api
from fsmigrate.cli import cli
from fsmigrate.scripts import loader

SET_ITEMS = """
def plan(ctx):
    for i in range({n}):
        yield ctx.set(f"items/i{{i}}", {{"n": i, "by": "{by}"}})
"""


def script(folder: Path, name: str, revision: str, down: str | None, doc: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(
        f'"""{doc}"""\nrevision = "{revision}"\ndown_revision = {down!r}\n\n'
        + textwrap.dedent(body)
    )
    return path


def client(project: str, database: str = "(default)"):
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


def items(project: str, database: str = "(default)") -> dict[str, dict]:
    c = client(project, database)
    try:
        return {s.id: s.to_dict() for s in c.collection("items").stream()}
    finally:
        c.close()


@pytest.fixture
def team_repo(
    tmp_path: Path, emulator, project_id: str, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> Path:
    """A throwaway team repository: [tool.fsmigrate] with `dev` (the emulator's default
    database) and `stage` (a named database), `prod` that always asks; no other option is
    ever passed. FIRESTORE_EMULATOR_HOST is unset: the file says where the emulator is."""
    repo = tmp_path / "team"
    (repo / "db").mkdir(parents=True)
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    (repo / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "team-service"

            [tool.fsmigrate]
            migrations = "db/migrations"
            state = "db/state.db"
            batch-size = 2

            [tool.fsmigrate.env.dev]
            project = "{project_id}"
            emulator-host = "{host}"

            [tool.fsmigrate.env.stage]
            project = "{project_id}"
            database = "stage"
            emulator-host = "{host}"
            batch-size = 5

            [tool.fsmigrate.env.prod]
            project = "{project_id}"
            database = "prod"
            emulator-host = "{host}"
            always-confirm = true
            """
        )
    )
    script(repo / "db/migrations", "0001_seed_items", "0001", None, "Seed items.",
           SET_ITEMS.format(n=5, by="0001"))  # fmt: skip
    monkeypatch.chdir(repo / "db")  # from a subdirectory: the file is found above
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST")
    return repo


def run(*args: str, input: str | None = None, env: dict | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env)


def test_a_team_repository_works_with_env_and_api_config_alone(
    team_repo: Path, project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("--env", "dev", "upgrade")
    assert result.exit_code == 0, result.output
    result = run("--env", "stage", "status", "--check")
    assert result.exit_code == 1
    assert "1 migration(s) pending on project " in result.stderr
    assert "database stage" in result.stderr
    cfg = api.Config.from_file(env="stage")
    assert (cfg.project, cfg.database) == (project_id, "stage")
    done = api.upgrade(cfg)
    assert [r.revision for r in done.runs] == ["0001"]
    # the environment's batch-size (5) beat the defaults' (2): one batch of five
    assert done.runs[0].batches == 1
    done.state.close()
    assert run("--env", "stage", "status", "--check").exit_code == 0
    assert run("--env", "dev", "status", "--check").exit_code == 0
    with monkeypatch.context() as m:
        m.setenv("FIRESTORE_EMULATOR_HOST", str(cfg.emulator_host))
        assert set(items(project_id, "stage")) == {f"i{i}" for i in range(5)}
        assert set(items(project_id)) == {f"i{i}" for i in range(5)}  # dev's
    dev_runs = json.loads(run("--env", "dev", "history", "--format", "json").stdout)["runs"]
    assert [r["batches"] for r in dev_runs] == [3]  # the defaults' batch-size: 2, 2, 1
    assert {r["database"] for r in dev_runs} == {"(default)"}
    state = team_repo / "db/state.db"
    assert state.exists() and not (team_repo / "db/db").exists()  # relative to the file


def test_precedence_flag_over_variable_over_environment_in_a_run(
    team_repo: Path, project_id: str
) -> None:
    # the environment variable beats the environment's database; the flag beats both
    result = run("--env", "stage", "upgrade", env={"FSMIGRATE_DATABASE": "from-var"})
    assert result.exit_code == 0, result.output
    result = run(
        "--env", "stage", "--database", "from-flag", "upgrade", "--batch-size", "1",
        env={"FSMIGRATE_DATABASE": "from-var"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for database, batches in (("from-var", 1), ("from-flag", 5)):
        runs = json.loads(
            run("--env", "stage", "--database", database, "history", "--format", "json").stdout
        )["runs"]
        assert [(r["database"], r["batches"]) for r in runs] == [(database, batches)]
    stage = json.loads(run("--env", "stage", "status", "--format", "json").stdout)
    assert [r["state"] for r in stage["revisions"]] == ["pending"]


def test_an_environment_that_always_asks(team_repo: Path, project_id: str) -> None:
    result = run("--env", "prod", "upgrade", input="n\n")
    assert result.exit_code == 1
    assert "[environment prod]?" in result.stderr  # asked, though on the emulator
    result = run("upgrade", "--yes", env={"FSMIGRATE_ENV": "prod"})
    assert result.exit_code == 2
    assert "--yes is accepted only with `--env prod` on the command line" in result.stderr
    assert run("--env", "stage", "status", "--check").exit_code == 1  # nothing applied
    result = run("--env", "prod", "upgrade", "--yes")
    assert result.exit_code == 0, result.output
    script(team_repo / "db/migrations", "0002_more", "0002", "0001", "More.",
           SET_ITEMS.format(n=1, by="0002"))  # fmt: skip
    cfg = api.Config.from_file(env="prod")
    with pytest.raises(api.ConfirmationRequired, match=r"\[environment prod\]"):
        api.upgrade(cfg)
    asked: list[str] = []
    done = api.upgrade(cfg, confirm=lambda prompt: asked.append(prompt) or True)
    assert [r.revision for r in done.runs] == ["0002"] and len(asked) == 1
    done.state.close()


def test_status_check_says_why(team_repo: Path, project_id: str) -> None:
    folder = team_repo / "db/migrations"
    result = run("--env", "dev", "status", "--check", "--plan", "--format", "markdown")
    assert result.exit_code == 1
    comment = result.stdout
    assert "### fsmigrate: **not up to date**" in comment
    assert "| `0001` | Seed items. | 0 | 5 | 0 | 0 |" in comment  # set: 5 (dry-run counts)
    assert run("--env", "dev", "upgrade").exit_code == 0
    ok = run("--env", "dev", "status", "--check", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    # drift: an applied script edited
    path = folder / "0001_seed_items.py"
    original = path.read_text()
    path.write_text(original + "\n# edited\n")
    result = run("--env", "dev", "status", "--check")
    assert result.exit_code == 1 and "CHECK FAILED: changed: revision 0001" in result.stderr
    path.write_text(original)
    # two heads
    script(folder, "0002_a", "0002", "0001", "A.", "def plan(ctx):\n    yield from ()\n")
    script(folder, "0003_b", "0003", "0001", "B.", "def plan(ctx):\n    yield from ()\n")
    result = run("--env", "dev", "status", "--check", "--format", "markdown")
    assert result.exit_code == 1
    assert "the scripts do not load: the migration chain has 2 heads" in result.stderr
    assert "2 heads" in result.stdout
    # a script that does not load
    (folder / "0003_b.py").write_text('"""B."""\nrevision = "0003"\ndown_revision = "0002"\n(')
    result = run("--env", "dev", "status", "--check")
    assert result.exit_code == 1 and "the scripts do not load" in result.stderr


def two_branches(folder: Path) -> None:
    """main applied 0002_theirs; this branch added 0002_mine and 0003_mine_more."""
    body = "def plan(ctx):\n    yield ctx.set('branch/{}', {{'ok': True}})\n"
    script(folder, "0002_theirs", "0002", "0001", "Theirs.", body.format("theirs"))
    script(folder, "0002_mine", "0002", "0001", "Mine.", body.format("mine"))
    script(folder, "0003_mine_more", "0003", "0002", "Mine too.", body.format("more"))


def test_rebase_two_revisions_on_top_of_the_head(team_repo: Path, project_id: str) -> None:
    folder = team_repo / "db/migrations"
    body = "def plan(ctx):\n    yield ctx.set('branch/theirs', {'ok': True})\n"
    script(folder, "0002_theirs", "0002", "0001", "Theirs.", body)
    assert run("--env", "dev", "upgrade").exit_code == 0  # main's 0002, applied
    two_branches(folder)
    result = run("--env", "dev", "upgrade")
    assert result.exit_code == 1 and "`fsmigrate rebase FILE`" in result.stderr
    # ambiguous: 0003_mine_more could follow either 0002
    result = run("--env", "dev", "rebase", "0002_mine.py")
    assert result.exit_code == 2 and "name this branch's in order" in result.stderr
    # the other branch's script is applied: refused
    result = run("--env", "dev", "rebase", "0002_theirs.py", "--only")
    assert result.exit_code == 2 and "is applied in" in result.stderr
    before = {p.name: p.read_text() for p in folder.glob("*.py")}
    result = run("--env", "dev", "rebase", "0002_mine", "0003_mine_more.py", "--dry-run")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_text() for p in folder.glob("*.py")} == before  # dry-run
    result = run("--env", "dev", "rebase", "0002_mine", "0003_mine_more", "--format", "json")
    assert result.exit_code == 0, result.output
    moved = json.loads(result.stdout)
    assert moved["onto"] == "0002"
    assert [(m["revision"], m["new_revision"], m["new_down_revision"]) for m in moved["moves"]] == [
        ("0002", "0003", "0002"),
        ("0003", "0004", "0003"),
    ]
    assert sorted(p.name for p in folder.glob("*.py")) == [
        "0001_seed_items.py",
        "0002_theirs.py",
        "0003_mine.py",
        "0004_mine_more.py",
    ]
    chain = loader.load_chain(folder)
    assert [(s.revision, s.down_revision, s.description) for s in chain] == [
        ("0001", None, "Seed items."),
        ("0002", "0001", "Theirs."),
        ("0003", "0002", "Mine."),
        ("0004", "0003", "Mine too."),
    ]
    text = (folder / "0003_mine.py").read_text()
    assert 'revision = "0003"\ndown_revision = "0002"\n' in text
    assert "yield ctx.set('branch/mine'" in text  # the rest of the file as it was
    result = run("--env", "dev", "upgrade")
    assert result.exit_code == 0, result.output
    assert run("--env", "dev", "status", "--check").exit_code == 0
    # now applied: moving them again is refused
    result = run("--env", "dev", "rebase", "0003")
    assert result.exit_code == 2 and "is applied in" in result.stderr


def test_rebase_sees_the_markers_of_another_machine(team_repo: Path, project_id: str) -> None:
    folder = team_repo / "db/migrations"
    script(folder, "0002_mine", "0002", "0001", "Mine.", "def plan(ctx):\n    yield from ()\n")
    other = ["--env", "dev", "--state", str(team_repo / "elsewhere.db")]
    assert run(*other, "upgrade").exit_code == 0  # applied from another state file
    result = run("--env", "dev", "rebase", "0002", "--dry-run")
    assert result.exit_code == 2
    assert "is applied in the markers of project" in result.stderr
    result = run("--env", "dev", "rebase", "0002", "--dry-run", "--local")
    assert result.exit_code == 0, result.output  # the state file alone does not know


def test_a_target_that_applied_another_script_is_refused_by_every_writing_command(
    team_repo: Path, project_id: str
) -> None:
    folder = team_repo / "db/migrations"
    theirs = script(
        folder, "0002_theirs", "0002", "0001", "Theirs.", "def plan(ctx):\n    yield from ()\n"
    )
    assert run("--env", "dev", "upgrade").exit_code == 0
    theirs.unlink()  # this branch, before merging main: its own 0002
    script(folder, "0002_mine", "0002", "0001", "Mine.", "def plan(ctx):\n    yield from ()\n")
    script(folder, "0003_more", "0003", "0002", "More.", "def plan(ctx):\n    yield from ()\n")
    for args in (
        ["upgrade"],
        ["upgrade", "--dry-run"],
        ["rerun", "0001"],
        ["stamp", "0003", "--reason", "x"],
        ["resolve", "0003", "--reason", "x"],
    ):
        result = run("--env", "dev", *args)
        assert result.exit_code == 1, (args, result.output)
        assert "is another script ('Theirs.'" in result.stderr, args
        assert "`fsmigrate rebase 0002_mine.py`" in result.stderr, args
    for local in ([], ["--local"]):
        rows = json.loads(run("--env", "dev", "status", *local, "--format", "json").stdout)
        states = {r["revision"]: r["state"] for r in rows["revisions"]}
        assert states == {
            "0001": "applied",
            "0002": "applied (different script)",
            "0003": "pending",
        }, local
    result = run("--env", "dev", "status", "--check")
    assert result.exit_code == 1 and "different script: revision 0002" in result.stderr
    # nothing of 0003 ran, and 0002 is not recorded as this script's
    runs = json.loads(run("--env", "dev", "history", "--format", "json").stdout)["runs"]
    assert sorted(r["revision"] for r in runs) == ["0001", "0002"]
