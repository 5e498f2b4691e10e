"""MkDocs hook: tables generated from the code, so the docs cannot drift from it.

A page asks for one with a line `<!-- generated: NAME -->`; the build replaces the line
with the markdown `GENERATORS[NAME]` returns. An unknown name fails the build.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
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


GENERATORS: dict[str, Callable[[], str]] = {
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
