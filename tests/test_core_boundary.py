"""The framework's core knows nothing of heartbeats: no module of fsmigrate/ outside
fsmigrate/heartbeats/ (and fsmigrate/testing/, if it exists) imports fsmigrate.heartbeats,
absolutely, relatively or inside a function. The heartbeat check reaches the CLI only
through its entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fsmigrate"
DOMAIN = "fsmigrate.heartbeats"
OUTSIDE_CORE = ("heartbeats", "testing")  # subpackages of fsmigrate that are not the core


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in OUTSIDE_CORE
    )


def imported(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `module` imports, relative imports resolved;
    `from X import Y` yields both X and X.Y (Y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            yield node.lineno, origin
            for alias in node.names:
                yield node.lineno, f"{origin}.{alias.name}"


def domain_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    return [
        f"line {line}: {name}"
        for line, name in imported(source, module, is_package)
        if name == DOMAIN or name.startswith(DOMAIN + ".")
    ]


@pytest.mark.parametrize(
    "source, module, is_package",
    [
        ("from . import heartbeats", "fsmigrate.cli", False),
        ("from . import checks, heartbeats as hb", "fsmigrate.cli", False),
        ("from .heartbeats import classify", "fsmigrate.report", False),
        ("from .heartbeats.check import Health", "fsmigrate.report", False),
        ("from .. import heartbeats", "fsmigrate.sub.mod", False),
        ("from ..heartbeats import incident", "fsmigrate.sub.mod", False),
        ("from .heartbeats import x", "fsmigrate", True),
        ("import fsmigrate.heartbeats", "fsmigrate.cli", False),
        ("import fsmigrate.heartbeats.check as c", "fsmigrate.cli", False),
        ("from fsmigrate import heartbeats", "fsmigrate.cli", False),
        ("from fsmigrate.heartbeats import COLLECTION", "fsmigrate.cli", False),
        ("def f():\n    from .heartbeats import incident\n", "fsmigrate.cli", False),
    ],
)
def test_the_detector_sees_every_form(source: str, module: str, is_package: bool) -> None:
    assert domain_imports(source, module, is_package)


@pytest.mark.parametrize(
    "source, module",
    [
        ("from . import checks, durations", "fsmigrate.cli"),
        ("from .heartbeatsx import y", "fsmigrate.cli"),
        ("import heartbeats", "fsmigrate.cli"),
        ("from .sub import heartbeats", "fsmigrate.cli"),
        ("from fsmigrate.checks import heartbeats_like", "fsmigrate.cli"),
    ],
)
def test_the_detector_does_not_cry_wolf(source: str, module: str) -> None:
    assert domain_imports(source, module) == []


def test_no_core_module_imports_the_heartbeat_domain() -> None:
    modules = core_modules()
    assert PACKAGE / "cli.py" in modules and PACKAGE / "checks.py" in modules
    assert not any(p.is_relative_to(PACKAGE / "heartbeats") for p in modules)
    found = {}
    for path in modules:
        hits = domain_imports(
            path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
        )
        if hits:
            found[str(path.relative_to(PACKAGE.parent))] = hits
    assert found == {}, f"core modules importing {DOMAIN}: {found}"


def test_importing_the_core_does_not_load_the_heartbeat_domain() -> None:
    names = [module_name(p) for p in core_modules() if p.name != "__main__.py"]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m == {DOMAIN!r} "
        f"or m.startswith({DOMAIN + '.'!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
