"""The documentation site: it builds strictly, its reference pages are complete against the
code (every option of every command, every name of `fsmigrate.api.__all__`, every lint
code, every environment variable), and what the prose names (tests, pages) exists."""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from fsmigrate import api
from fsmigrate.cli import cli
from fsmigrate.lint.rules import RULES

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once as `bin/docs` builds it: strict, so any warning fails."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    assert "WARNING" not in result.stderr, result.stderr
    return out


def _commands(
    command: click.Command, path: tuple[str, ...], parent: click.Context | None = None
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    ctx = click.Context(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            if not sub.hidden:
                yield from _commands(sub, (*path, name), ctx)


def _sections(page: str) -> dict[str, str]:
    """The HTML of each command's section, by heading id (`fsmigrate-upgrade`); the global
    options' section as `fsmigrate`."""
    heads = list(re.finditer(r'<h\d id="(fsmigrate(?:-[a-z-]+)?|global-options)"', page))
    return {
        ("fsmigrate" if m.group(1) == "global-options" else m.group(1)): page[
            m.end() : heads[i + 1].start() if i + 1 < len(heads) else len(page)
        ]
        for i, m in enumerate(heads)
    }


_ROW = re.compile(
    r'<tr><td class="fsm-option"><code>(?P<names>[^<]*)</code></td>'
    r"<td>(?P<help>.*?)</td><td>(?P<default>.*?)</td></tr>"
)


def _text(fragment: str, tag: str = "") -> str:
    """The text of an HTML fragment, each tag replaced by `tag`."""
    return html.unescape(re.sub(r"<[^>]+>", tag, fragment)).strip()


def _click_default(option: click.Option, ctx: click.Context) -> str:
    """The default `--help` shows for an option (`[default: X]`, from click's show_default
    or stated in the help where the config file may change it), else a flag's state, else
    click's own default value, else "none"."""
    _, help_text = option.get_help_record(ctx)
    stated = re.findall(r"\[default: ((?:[^\[\]]|\[[^\]]*\])*)\]", help_text)
    if stated:
        return stated[-1]
    if not option.expose_value:
        return ""  # --version
    value = option.get_default(ctx, call=False)
    if option.is_flag:
        return "on" if value else "off"
    if value is None or value == () or "Sentinel" in repr(value):
        return "none"
    return str(value)


def test_the_command_reference_lists_every_option_of_every_command(site: Path) -> None:
    page = (site / "reference" / "cli" / "index.html").read_text()
    sections = _sections(page)
    seen = 0
    for path, command, ctx in _commands(cli, ("fsmigrate",)):
        anchor = "-".join(path)
        assert anchor in sections, f"`{' '.join(path)}` has no section on reference/cli.md"
        text = _text(sections[anchor], " ")
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden:
                if param is command.get_help_option(ctx):
                    continue  # said once at the top of the page
                for opt in [*param.opts, *param.secondary_opts]:
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
                        f"`{' '.join(path)}`: option {opt} is not on reference/cli.md"
                    )
            elif isinstance(param, click.Argument):
                assert param.human_readable_name in text, (
                    f"`{' '.join(path)}`: argument {param.human_readable_name} is not listed"
                )
        seen += 1
    assert seen >= 20  # every command, the check and emulator subcommands included


def test_the_command_reference_shows_each_option_s_real_default_and_help(site: Path) -> None:
    """No sentinel, no "None", no "N/A": the default `--help` shows, every option described,
    the global options included (generated from click, not typed)."""
    page = (site / "reference" / "cli" / "index.html").read_text()
    text = _text(page)
    for wrong in ("Sentinel", "N/A", "UNSET"):
        assert wrong not in text, f"reference/cli.md shows {wrong!r}"
    sections = _sections(page)
    checked = 0
    for path, command, ctx in _commands(cli, ("fsmigrate",)):
        rows = {
            name: (_text(m["help"]), _text(m["default"]))
            for m in _ROW.finditer(sections["-".join(path)])
            for name in re.findall(r"(?<![\w-])--?[a-z][\w-]*", _text(m["names"]))
        }
        for param in command.get_params(ctx):
            if not isinstance(param, click.Option) or param.hidden:
                continue
            if param is command.get_help_option(ctx):
                continue
            where = f"`{' '.join(path)} {param.opts[0]}`"
            assert param.opts[0] in rows, f"{where} has no row in its table"
            help_text, default = rows[param.opts[0]]
            assert help_text, f"{where} has no description"
            assert default == _click_default(param, ctx), f"{where}: default {default!r}"
            assert default != "None"
            checked += 1
    assert checked >= 100  # every option of every command


def test_the_api_reference_names_every_entry_of_all(site: Path) -> None:
    page = (site / "reference" / "api" / "index.html").read_text()
    missing = [name for name in api.__all__ if f'id="fsmigrate.api.{name}"' not in page]
    assert not missing, f"reference/api.md does not document: {missing}"


def _api_entries(page: str) -> dict[str, str]:
    """The HTML of each entry of the API page, by name, in page order."""
    heads = list(re.finditer(r'<h3 id="fsmigrate\.api\.(\w+)"', page))
    return {
        m.group(1): page[m.start() : heads[i + 1].start() if i + 1 < len(heads) else len(page)]
        for i, m in enumerate(heads)
    }


def test_the_api_reference_reads_as_a_python_user_expects(site: Path) -> None:
    """The functions first; each with its Parameters (and a dataclass with its fields);
    every public name with a docstring of its own; `Config` generated from the code."""
    entries = _api_entries((site / "reference" / "api" / "index.html").read_text())
    order = list(entries)
    functions = [n for n in api.__all__ if inspect.isfunction(getattr(api, n))]
    classes = [n for n in api.__all__ if inspect.isclass(getattr(api, n))]
    assert max(order.index(n) for n in functions if n != "close") < min(
        order.index(n) for n in classes
    ), "the functions come before the classes"
    assert order[0] == "upgrade"
    for name in api.__all__:
        obj = getattr(api, name)
        sections = re.findall(r'doc-section-title">([^<]*)<', entries[name])
        if inspect.isfunction(obj) and inspect.signature(obj).parameters:
            assert "Parameters:" in sections, f"api.{name} has no Parameters section"
            documented = set(re.findall(r">\*{0,2}(\w+)</(?:a|code)>", entries[name]))
            missing = set(inspect.signature(obj).parameters) - documented
            assert not missing, f"api.{name}: parameters not described: {missing}"
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            assert {"Parameters:", "Attributes:"} & set(sections), f"api.{name}: no fields"
            named = set(re.findall(r">(\w+)</(?:a|code)>", entries[name]))
            for field in dataclasses.fields(obj):
                assert field.name in named, f"api.{name}.{field.name} is not described"
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__, (
                f"api.{name} has no docstring"
            )
    # Config is generated, not typed: every field on the page, none in the prose
    source = (DOCS / "reference" / "api.md").read_text()
    assert "Config(project=None" not in source  # the hand-typed signature it had


@pytest.mark.parametrize(
    "module, names",
    [
        ("distributed", ["scan"]),
        ("normalize", ["Normalization", "keep_newest"]),
        ("testing", ["started_emulator"]),
        (
            "testing",
            ["harness.Harness", "checks.test_single_head", "checks.test_plan_never_writes"],
        ),
    ],
)
def test_the_other_python_references_are_generated(
    site: Path, module: str, names: list[str]
) -> None:
    page = (site / "reference" / module / "index.html").read_text()
    for name in names:
        assert f'id="fsmigrate.{module}.{name}"' in page


def test_the_lint_codes_table_is_generated_from_the_rules(site: Path) -> None:
    page = (site / "reference" / "lint-codes" / "index.html").read_text()
    source = (DOCS / "reference" / "lint-codes.md").read_text()
    assert "<!-- generated: lint-rules -->" in source
    for rule in RULES.values():
        assert f"<code>{rule.code}</code></td>" in page and rule.name in page
        assert html.escape(rule.summary, quote=False) in page, rule.code
        assert f"\n### {rule.code}\n" in source, f"{rule.code} has no section on lint-codes.md"


def test_the_state_schema_and_error_classes_are_generated(site: Path) -> None:
    from fsmigrate import errors
    from fsmigrate.state.schema import SCHEMA_VERSION

    state = (site / "reference" / "state-file" / "index.html").read_text()
    assert "CREATE TABLE IF NOT EXISTS" in html.unescape(re.sub(r"<[^>]+>", "", state))
    assert f"Schema version <strong>{SCHEMA_VERSION}</strong>" in state
    codes = (site / "reference" / "exit-codes" / "index.html").read_text()
    for cls in (errors.UsageError, errors.PlanFileInvalid, api.ConfirmationRequired):
        assert f"{cls.__module__}.{cls.__name__}" in codes


def test_every_page_is_in_the_nav_and_the_build_fails_on_one_that_is_not() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True
    assert config["validation"]["nav"]["omitted_files"] == "warn"
    assert config["theme"]["font"] is False  # nothing fetched at build time

    def pages(nav: object) -> Iterator[str]:
        if isinstance(nav, str):
            yield nav
        elif isinstance(nav, list):
            for item in nav:
                yield from pages(item)
        elif isinstance(nav, dict):
            for value in nav.values():
                yield from pages(value)

    listed = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert on_disk - listed == set(), "pages missing from the nav of mkdocs.yml"
    assert listed - on_disk == set(), "nav entries without a page"


def test_every_test_named_on_the_guarantees_page_exists() -> None:
    text = (DOCS / "explanation" / "guarantees.md").read_text()
    refs = 0
    for row in text.splitlines():
        if not row.startswith("|") or "`test_" not in row:
            continue
        current: str | None = None
        for ref in re.findall(r"`((?:test_\w+\.py)?(?:::test_\w+)?|test_\w+)`", row):
            file, _, name = ref.partition("::")
            if not file.endswith(".py"):  # `(incl. test_x)`: a test of the file named before
                file, name = "", file
            current = file or current
            assert current, f"`{ref}` names a test without its file: {row[:80]}"
            path = REPO / "tests" / current
            assert path.exists(), f"guarantees.md names {current}, which does not exist"
            if name:
                defined = {
                    n.name
                    for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
                assert name in defined, f"guarantees.md names {current}::{name}, not defined"
            refs += 1
    assert refs >= 40


def test_every_environment_variable_of_the_code_is_documented() -> None:
    found = set()
    for path in (REPO / "fsmigrate").rglob("*.py"):
        found |= set(re.findall(r"\bFSMIGRATE_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    documented = (DOCS / "reference" / "environment.md").read_text()
    missing = sorted(v for v in found if f"`{v}`" not in documented)
    assert not missing, f"reference/environment.md does not name {missing}"


def test_the_benchmarks_the_performance_page_names_exist() -> None:
    text = (DOCS / "explanation" / "performance.md").read_text()
    scripts = set(re.findall(r"bench/\w+\.py", text))
    assert len(scripts) >= 5
    for script in scripts:
        assert (REPO / script).exists(), script


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for command in ("bin/demo", "bin/test", "bin/docs serve"):
        assert command in text
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"
