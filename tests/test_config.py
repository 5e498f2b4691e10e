"""The config file (pure): where it is found, what it may hold, the order of precedence
(flag > environment variable > the environment's key > the file's defaults > built-in),
and the one-line errors (exit 2) for a bad file, key or environment."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsmigrate import api, config
from fsmigrate.cli import cli

PYPROJECT = """
[project]
name = "team-repo"

[tool.fsmigrate]
project = "acme-dev"
migrations = "db/migrations"
state = "var/state.db"
batch-size = 200

[tool.fsmigrate.env.stage]
project = "acme-stage"
database = "stage"
max-rate = 1000

[tool.fsmigrate.env.prod]
project = "acme-prod"
max-rate = 300
concurrency = 4
always-confirm = true
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Path:
    write(tmp_path / "repo", "pyproject.toml", PYPROJECT)
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path / "repo"


def shown(*args: str, env: dict[str, str] | None = None) -> dict:
    result = CliRunner().invoke(cli, [*args, "config", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_precedence_flag_then_variable_then_environment_then_defaults(repo: Path) -> None:
    # defaults only
    got = shown()["settings"]
    assert got["project"] == {"value": "acme-dev", "source": "pyproject.toml [tool.fsmigrate]"}
    assert got["database"] == {"value": "(default)", "source": "default"}
    assert got["batch-size"]["value"] == 200
    # the environment's key beats the defaults; the defaults fill what it does not say
    got = shown("--env", "stage")["settings"]
    assert got["project"] == {
        "value": "acme-stage",
        "source": "pyproject.toml [tool.fsmigrate.env.stage]",
    }
    assert got["database"]["value"] == "stage"
    assert got["batch-size"] == {"value": 200, "source": "pyproject.toml [tool.fsmigrate]"}
    # an environment variable beats the environment's key
    got = shown("--env", "stage", env={"FSMIGRATE_PROJECT": "from-var"})["settings"]
    assert got["project"] == {"value": "from-var", "source": "FSMIGRATE_PROJECT"}
    # a flag beats the environment variable
    got = shown("--env", "stage", "--project", "from-flag", env={"FSMIGRATE_PROJECT": "from-var"})[
        "settings"
    ]
    assert got["project"] == {"value": "from-flag", "source": "--project"}
    # GOOGLE_CLOUD_PROJECT (ambient) never beats a project the file names
    got = shown("--env", "stage", env={"GOOGLE_CLOUD_PROJECT": "ambient"})["settings"]
    assert got["project"]["value"] == "acme-stage"


def test_the_same_order_through_api_config(repo: Path) -> None:
    cfg = api.Config.from_file(env="prod", environ={})
    assert (cfg.project, cfg.database, cfg.environment, cfg.always_confirm) == (
        "acme-prod",
        "(default)",
        "prod",
        True,
    )
    assert cfg.run_options().max_rate == 300.0
    assert cfg.run_options().concurrency == 4
    assert cfg.run_options().batch_size == 200
    assert (
        cfg.run_options(api.RunOptions(batch_size=10)).batch_size == 10
    )  # given to the call: like a flag
    # paths in the file are relative to the file, wherever the command runs from
    assert Path(cfg.migrations) == repo.resolve() / "db/migrations"
    assert Path(cfg.state) == repo.resolve() / "var/state.db"
    env = {"FSMIGRATE_PROJECT": "var", "FSMIGRATE_ENV": "stage"}
    cfg = api.Config.from_file(repo / "pyproject.toml", environ=env)
    assert (cfg.project, cfg.database, cfg.environment) == ("var", "stage", "stage")
    cfg = api.Config.from_file(environ=env, env="prod", project="kw")
    assert (cfg.project, cfg.environment) == ("kw", "prod")
    assert api.config(cfg).source("project") == "project="


def test_found_from_a_subdirectory_and_fsmigrate_toml(repo: Path, tmp_path: Path) -> None:
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    assert config.find(deep) == repo / "pyproject.toml"
    own = write(
        tmp_path / "other",
        "fsmigrate.toml",
        """
        project = "p"
        [env.dev]
        emulator-host = "127.0.0.1:8080"
        """,
    )
    settings = config.load(own, "dev", environ={})
    assert settings["emulator-host"] == "127.0.0.1:8080"
    assert settings.source("emulator-host") == "fsmigrate.toml [env.dev]"
    # a pyproject.toml without [tool.fsmigrate] is not a config file
    write(tmp_path / "plain", "pyproject.toml", "[project]\nname = 'x'\n")
    assert config.find(tmp_path / "plain") is None or config.find(tmp_path / "plain") != (
        tmp_path / "plain" / "pyproject.toml"
    )


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            "[tool.fsmigrate]\nmax_rate = 5\n",
            [],
            "pyproject.toml [tool.fsmigrate]: unknown key 'max_rate' (did you mean 'max-rate'?)",
        ),
        (
            '[tool.fsmigrate.env.prod]\nprojekt = "x"\n',
            [],
            "pyproject.toml [tool.fsmigrate.env.prod]: unknown key 'projekt'",
        ),
        (
            "[tool.fsmigrate.env.prod]\nproject = 'x'\n",
            ["--env", "prd"],
            "no environment 'prd' in",
        ),
        ("[tool.fsmigrate]\nbatch-size = 501\n", [], "batch-size must be from 1 to 500"),
        ("[tool.fsmigrate]\nconcurrency = true\n", [], "concurrency must be an integer"),
        ("[tool.fsmigrate]\nalways-confirm = true\n", [], "belongs in an environment"),
        ("[tool.fsmigrate]\nproject = 'x\n", [], "not valid TOML"),
        ('[tool.fsmigrate]\nrunner = "spark"\n', [], "runner must be one of local, beam"),
        ('[tool.fsmigrate]\npatience = "soon"\n', [], "patience must be a positive duration"),
        ("[tool.fsmigrate]\nmax-skip-ratio = 1.5\n", [], "max-skip-ratio must be from 0 to 1"),
    ],
)
def test_a_bad_file_key_or_environment_is_one_line_exit_2(
    repo: Path, text: str, args: list[str], message: str
) -> None:
    (repo / "pyproject.toml").write_text(text)
    result = CliRunner().invoke(cli, [*args, "status"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED: "), result.stderr
    assert message in lines[0]


def test_an_environment_without_a_config_file_and_two_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FSMIGRATE_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["status"], env={"FSMIGRATE_ENV": "prod"})
    assert result.exit_code == 2
    assert "environment 'prod' (FSMIGRATE_ENV) needs a config file" in result.stderr
    write(tmp_path, "fsmigrate.toml", "project = 'a'\n")
    write(tmp_path, "pyproject.toml", "[tool.fsmigrate]\nproject = 'b'\n")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 2
    assert "keep one" in result.stderr


def test_yes_needs_the_environment_named_on_the_command_line(repo: Path) -> None:
    from_var = config.load(None, None, environ={"FSMIGRATE_ENV": "prod"})
    with pytest.raises(config.ConfigError.__mro__[1], match="--env prod"):
        from_var.check_yes()
    config.load(None, "prod", environ={}).check_yes()  # named: accepted
    config.load(None, "stage", environ={"FSMIGRATE_ENV": "prod"}).check_yes()  # not always


def test_config_text_output_names_each_source(repo: Path) -> None:
    result = CliRunner().invoke(cli, ["--env", "prod", "--database", "x", "config"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2] == "environments: prod, stage"
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[3:]}
    assert result.stdout.splitlines()[1] == "environment: prod (from --env)"
    assert lines["project"].split()[1:] == [
        "acme-prod",
        "pyproject.toml",
        "[tool.fsmigrate.env.prod]",
    ]
    assert lines["database"].split()[1:] == ["x", "--database"]
    assert lines["always-confirm"].split()[1] == "true"


def test_patience_and_the_skip_budget_come_from_the_file_too(repo: Path) -> None:
    """The run's patience (a global setting) and --max-skip-ratio (a run option) are keys
    of the config file, under the same order as every other setting."""
    (repo / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.fsmigrate]
            project = "acme-dev"
            patience = "30m"
            max-skip-ratio = 0.2

            [tool.fsmigrate.env.prod]
            patience = "2h"
            max-skip-ratio = 0.05
            """
        )
    )
    cfg = api.Config.from_file(environ={})
    assert (cfg.patience, cfg.run_options().max_skip_ratio) == (1800.0, 0.2)
    cfg = api.Config.from_file(env="prod", environ={})
    assert (cfg.patience, cfg.run_options().max_skip_ratio) == (7200.0, 0.05)
    assert (
        cfg.run_options(api.RunOptions(max_skip_ratio=0.5)).max_skip_ratio == 0.5
    )  # given to the call: like a flag
    got = shown("--env", "prod", env={"FSMIGRATE_PATIENCE": "5m"})["settings"]
    assert got["patience"] == {"value": "5m", "source": "FSMIGRATE_PATIENCE"}
    assert got["max-skip-ratio"]["source"] == "pyproject.toml [tool.fsmigrate.env.prod]"
    got = shown("--env", "prod", "--patience", "90s", env={"FSMIGRATE_PATIENCE": "5m"})
    assert got["settings"]["patience"] == {"value": "90s", "source": "--patience"}
