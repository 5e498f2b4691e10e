"""MkDocs hook: tables generated from the code, so the docs cannot drift from it.

A page asks for one with a line `<!-- generated: NAME -->`; the build replaces the line
with the markdown `GENERATORS[NAME]` returns. An unknown name fails the build.
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def lint_rules() -> str:
    from fsmigrate.lint.rules import RULES

    rows = ["| code | name | severity | what it finds | can be silenced |", "|---|---|---|---|---|"]
    for rule in RULES.values():
        rows.append(
            f"| `{rule.code}` | {rule.name} | {rule.severity} | {_cell(rule.summary)} "
            f"| {'yes' if rule.silenceable else 'no'} |"
        )
    return "\n".join(rows)


def state_schema() -> str:
    from fsmigrate.state.schema import SCHEMA, SCHEMA_VERSION

    return (
        f"Schema version **{SCHEMA_VERSION}** (`fsmigrate/state/schema.py`, kept in the table "
        f"`meta` under `schema_version`):\n\n```sql\n{SCHEMA.strip()}\n```"
    )


def _error_classes() -> list[type]:
    import fsmigrate.api
    import fsmigrate.errors
    from fsmigrate.errors import FsMigrateError

    seen: dict[str, type] = {}
    for module in (fsmigrate.errors, fsmigrate.api):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, FsMigrateError) and obj.__module__.startswith("fsmigrate"):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(seen.values(), key=lambda c: (c.exit_code, c.__mro__.__len__(), c.__name__))


def error_classes() -> str:
    rows = ["| exception | exit code | subclass of | what it means |", "|---|---|---|---|"]
    for cls in _error_classes():
        doc = inspect.getdoc(cls) or ""
        first = doc.split("\n\n")[0]
        base = cls.__mro__[1].__name__
        rows.append(
            f"| `{cls.__module__}.{cls.__name__}` | {cls.exit_code} | `{base}` | {_cell(first)} |"
        )
    return "\n".join(rows)


# ---- the command reference (reference/cli.md) ----------------------------------------------
#
# Read from click as `--help` prints it: each option's names and metavar and its help from
# `Option.get_help_record`, its default from the `[default: ...]` click shows (show_default)
# or the help states (a default the config file may change), else the flag's state (`off`),
# else "none". Not mkdocs-click: its table prints `option.default` as it is (click 8.3's
# `Sentinel.UNSET`, `None` where the config supplies the default) and "N/A" for a missing
# help.

_DEFAULT = re.compile(r"\s*\[default: ((?:[^\[\]]|\[[^\]]*\])*)\]")


def _is_unset(value: object) -> bool:
    return value is None or type(value).__name__ == "Sentinel"  # click 8.3's UNSET


def option_default(option: Any, ctx: Any) -> tuple[str, str]:
    """(its help without the `[default: ...]`, its default as the reference shows it)."""
    _, help_text = option.get_help_record(ctx)
    stated = _DEFAULT.findall(help_text)
    help_text = " ".join(_DEFAULT.sub("", help_text).split())
    if stated:
        return help_text, stated[-1]
    if not option.expose_value:
        return help_text, ""  # --version: an action, no value
    value = option.get_default(ctx, call=False)
    if option.is_flag:
        return help_text, "on" if value else "off"
    if _is_unset(value) or (option.multiple and not value):
        return help_text, "none"
    return help_text, str(value)


def _html(text: str) -> str:
    """Help text as HTML: escaped, `code` spans as <code>."""
    parts = html.escape(text, quote=False).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _options_table(command: Any, ctx: Any) -> str:
    import click

    rows = []
    help_option = command.get_help_option(ctx)  # -h/--help: said once, above
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden or param is help_option:
            continue
        names, _ = param.get_help_record(ctx)
        help_text, default = option_default(param, ctx)
        if not help_text:
            raise ValueError(f"{ctx.command_path} {param.opts[0]}: an option without a help")
        plain = " " in default or default in ("", "none", "off", "on")
        shown = _html(default) if plain else f"<code>{_html(default)}</code>"
        rows.append(
            f'<tr><td class="fsm-option"><code>{html.escape(names, quote=False)}</code></td>'
            f"<td>{_html(help_text)}</td><td>{shown}</td></tr>"
        )
    return (
        '<table class="fsm-options">\n<thead><tr><th>option</th><th>what it does</th>'
        "<th>default</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )


def _help_markdown(command: Any) -> str:
    """A command's docstring as markdown: its paragraphs, its `Example:` block as code."""
    text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    return re.sub(r"(?m)^Example:\n\n", "Example:\n\n", text)


def _command_sections(command: Any, ctx: Any) -> Iterator[str]:
    import click

    if ctx.parent is not None:  # the root's options are the global options
        yield f"### {ctx.command_path}\n\n{_help_markdown(command)}\n"
        yield f"\n```text\n{command.get_usage(ctx)}\n```\n"
        help_option = command.get_help_option(ctx)
        options = [
            p
            for p in command.get_params(ctx)
            if isinstance(p, click.Option) and not p.hidden and p is not help_option
        ]
        if options:
            yield "\n" + _options_table(command, ctx) + "\n"
        yield "\n"
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _command_sections(sub, click.Context(sub, info_name=name, parent=ctx))


def _root() -> tuple[Any, Any]:
    import click

    from fsmigrate.cli import cli

    return cli, click.Context(cli, info_name="fsmigrate")


def commands() -> str:
    """Every command (and subcommand) of `fsmigrate`: its help, usage and options."""
    cli, ctx = _root()
    return "".join(_command_sections(cli, ctx))


def command_list() -> str:
    """One row per command: its link and the first line of its help."""
    import click

    cli, ctx = _root()
    rows = ["| command | what it does |", "|---|---|"]

    def walk(command: Any, ctx: Any) -> None:
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            path = sub_ctx.command_path.split(" ", 1)[1]
            anchor = sub_ctx.command_path.replace(" ", "-")
            usage = " ".join(sub.collect_usage_pieces(sub_ctx)).replace("[OPTIONS]", "").strip()
            usage = f" `{usage}`" if usage and not isinstance(sub, click.Group) else ""
            rows.append(f"| [`{path}`](#{anchor}){usage} | {_cell(sub.get_short_help_str(200))} |")
            if isinstance(sub, click.Group):
                walk(sub, sub_ctx)

    walk(cli, ctx)
    return "\n".join(rows)


def global_options() -> str:
    """The options of `fsmigrate` itself (before or after the command)."""
    cli, ctx = _root()
    return _options_table(cli, ctx)


GENERATORS: dict[str, Callable[[], str]] = {
    "commands": commands,
    "command-list": command_list,
    "global-options": global_options,
    "lint-rules": lint_rules,
    "state-schema": state_schema,
    "error-classes": error_classes,
}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated table {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
