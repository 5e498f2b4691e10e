"""Helpers on a script's syntax tree for the lint checks (pure)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Optional, Union

Def = Union[ast.FunctionDef, ast.AsyncFunctionDef]


def assigned(tree: ast.Module, name: str) -> Optional[ast.expr]:
    """The value last assigned to a module-level `name` (positions kept), or None."""
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = node.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
            and node.value is not None
        ):
            value = node.value
    return value


def is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def str_value(node: Optional[ast.expr]) -> Optional[str]:
    """The string `node` is a literal of, or None when it is not a string literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function body, not descending into nested functions and classes."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def is_generator(fn: Def) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own_nodes(fn))


def show(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_client_constructor(name: Optional[str]) -> bool:
    if not name:
        return False
    parts = name.split(".")
    if (
        parts[:2] == ["google", "cloud"]
        and len(parts) >= 4
        and parts[2].startswith("firestore")
        and parts[-1] in ("Client", "AsyncClient")
    ):
        return True
    return name in ("firebase_admin.firestore.client", "firebase_admin.firestore_async.client")


class Names:
    """What the imported names of a module stand for (`dt` -> `datetime`)."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    self.aliases[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    if alias.name != "*":
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(self, node: ast.AST) -> Optional[str]:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None
