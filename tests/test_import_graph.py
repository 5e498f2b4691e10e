"""The package's import graph: no circles, and no reaching into another module's private
names (importing `_name` from it, or reading or setting `obj._name` defined elsewhere).

The graph is read from the source with `ast` (nothing is imported), so a circle hidden
inside a function body counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fsmigrate
from importgraph import Package, cycles, private_reaches

PACKAGE = Path(fsmigrate.__file__).parent


@pytest.fixture(scope="module")
def package() -> Package:
    return Package.read(PACKAGE, "fsmigrate")


def test_no_import_circles(package: Package) -> None:
    found = cycles(package.graph())
    assert found == [], "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_private_reaches(package: Package) -> None:
    found = private_reaches(package)
    assert found == [], "private names used outside their module:\n" + "\n".join(found)


def test_imports_point_down(package: Package) -> None:
    """The lower layers never import the upper ones (docs/explanation/design.md)."""
    order = [
        "fsmigrate.cli",
        "fsmigrate.api",
        "fsmigrate.engine",
        "fsmigrate.state",
        "fsmigrate.firestore",
        "fsmigrate.errors",
    ]

    def rank(module: str) -> int | None:
        for i, prefix in enumerate(order):
            if module == prefix or module.startswith(prefix + "."):
                return i
        return None

    upward = []
    for source, targets in package.graph().items():
        for target in targets:
            a, b = rank(source), rank(target)
            if a is not None and b is not None and b < a:
                upward.append(f"{source} imports {target}")
    assert upward == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Package:
    root = tmp_path / "planted"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return Package.read(root, "planted")


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "a.py": "from planted import b\n",
            "b.py": "def f():\n    from .a import x\n    return x\n",
            "c.py": "import planted.a\n",
        },
    )
    assert cycles(package.graph()) == [["planted.a", "planted.b", "planted.a"]]


def test_a_planted_private_reach_is_found(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "owner.py": "class Runner:\n    def __init__(self):\n        self._ctx = None\n"
            "def _helper():\n    pass\n",
            "user.py": "from planted.owner import Runner, _helper\n"
            "def go(r: Runner):\n    r._ctx = 1\n    return _helper()\n",
            "fine.py": "class Own:\n    def __init__(self):\n        self._x = 1\n"
            "def peek(o: Own):\n    return o._x\n",
        },
    )
    found = private_reaches(package)
    assert len(found) == 2
    assert any("user.py:1" in line and "_helper" in line for line in found)
    assert any("user.py:3" in line and "_ctx" in line for line in found)


def test_the_graph_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"x.py": "def f():\n    from . import y\n", "y.py": ""})
    assert package.graph()["planted.x"] == {"planted.y"}
    assert isinstance(ast.parse("x = 1"), ast.Module)
