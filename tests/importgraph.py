"""Read a package's import graph and private-name uses from its source (ast, no imports)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module


@dataclass
class Package:
    name: str
    modules: dict[str, Module]

    @classmethod
    def read(cls, root: Path, name: str) -> Package:
        # in a thread of its own: CPython 3.11's AST validator can fail with "AST
        # constructor recursion depth mismatch" on a thread whose recursion count an earlier
        # test left skewed (seen under pytest-xdist); a new thread starts from zero
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(cls._read, root, name).result()

    @classmethod
    def _read(cls, root: Path, name: str) -> Package:
        modules = {}
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            dotted = ".".join([name, *parts])
            modules[dotted] = Module(dotted, path, is_package, ast.parse(path.read_text()))
        return cls(name, modules)

    def _absolute(self, module: Module, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = module.name.split(".")
        if not module.is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def imports(self, module: Module) -> list[tuple[int, str, list[str]]]:
        """(line, module imported, names taken from it) for every import in `module`."""
        found = []
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append((node.lineno, alias.name, []))
            elif isinstance(node, ast.ImportFrom):
                found.append(
                    (
                        node.lineno,
                        self._absolute(module, node),
                        [alias.name for alias in node.names],
                    )
                )
        return found

    def graph(self) -> dict[str, set[str]]:
        """module -> the package's modules it imports (a name that is a submodule counts as
        that submodule; a package's own __init__ is not an edge of its submodules)."""
        edges: dict[str, set[str]] = {name: set() for name in self.modules}
        for name, module in self.modules.items():
            for _, target, names in self.imports(module):
                if target not in self.modules:
                    continue
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in self.modules]
                if subs:
                    edges[name].update(subs)
                if not names or len(subs) < len(names):
                    if not self.modules[target].is_package or target != self.name:
                        edges[name].add(target)
            edges[name].discard(name)
        return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary circle found by a depth-first search, each once, smallest name
    first and closed (["a", "b", "a"])."""
    found: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str], on_path: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                found.add(tuple(path))
            elif nxt not in on_path and nxt > path[0]:
                on_path.add(nxt)
                path.append(nxt)
                visit(nxt, path, on_path)
                path.pop()
                on_path.discard(nxt)

    for start in sorted(graph):
        visit(start, [start], {start})
    return [[*c, c[0]] for c in sorted(found)]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_privates(module: Module) -> set[str]:
    """The private names `module` defines: functions, classes, assignments at any level,
    and attributes it sets on `self` (or on any object: it owns what it creates)."""
    names = set()
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def private_reaches(package: Package) -> list[str]:
    """`path:line name` for each private name of one module used in another: imported by
    name, or read or set as an attribute (`x._name`) where `_name` is defined by some other
    module of the package and not by this one."""
    defined = {name: _defined_privates(m) for name, m in package.modules.items()}
    everywhere: set[str] = set().union(*defined.values()) if defined else set()
    found = []
    for name, module in package.modules.items():
        own = defined[name]
        for line, target, names in package.imports(module):
            if target.startswith((package.name, ".")):
                for n in names:
                    if _private(n):
                        found.append(f"{module.path.name}:{line} imports {n} from {target}")
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and node.attr in everywhere
                and node.attr not in own
            ):
                found.append(
                    f"{module.path.name}:{node.lineno} uses .{node.attr} of "
                    f"{ast.unparse(node.value)}"
                )
    return sorted(found)
