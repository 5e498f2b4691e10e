"""FSM201: deletes of every document of an unfiltered scan, with no condition in between.

A delete of the loop's document counts when it runs on every pass: not under a branch,
not after a statement that can skip it (`if ...: continue`), not in half of `a if c else
b` or `a and b`. A scan with a `where=` filter is not every document.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from typing import Optional

from fsmigrate.lint.syntax import Names, assigned, is_none, own_nodes, show


def every_document_deleted(tree: ast.Module, names: Names) -> Iterator[tuple[ast.AST, str]]:
    """(the delete, the scan it deletes all of) in a module: `for` loops and
    comprehensions over `ctx.scan(...)` (or a name bound to one), and the per-document form
    (`source = scan(...)` with `def each(ctx, doc)`)."""
    scans = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and unfiltered_scan(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }

    def every(node: ast.expr) -> Optional[str]:
        if unfiltered_scan(node):
            return show(node)
        if isinstance(node, ast.Name) and node.id in scans:
            return node.id
        return None

    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.target, ast.Name):
            scan = every(node.iter)
            if scan is not None:
                for call in unconditional_deletes(node.body, node.target.id):
                    yield call, scan
        elif (
            isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp))
            and len(node.generators) == 1
        ):
            gen = node.generators[0]
            scan = every(gen.iter)
            if (
                scan is not None
                and not gen.ifs
                and isinstance(gen.target, ast.Name)
                and deletes(node.elt, gen.target.id)
            ):
                yield node.elt, scan
    yield from _each_deletes_all(tree, names)


def _each_deletes_all(tree: ast.Module, names: Names) -> Iterator[tuple[ast.AST, str]]:
    """The per-document form: an unfiltered `source = scan(...)` and an `each(ctx, doc)`
    that deletes `doc` with no condition."""
    source = assigned(tree, "source")
    if source is None or not isinstance(source, ast.Call) or has_filter(source):
        return
    if (names.resolve(source.func) or "").rsplit(".", 1)[-1] != "scan":
        return
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "each" and len(fn.args.args) >= 2:
            for call in unconditional_deletes(fn.body, fn.args.args[1].arg):
                yield call, show(source)


def has_filter(call: ast.Call) -> bool:
    for kw in call.keywords:
        if kw.arg == "where":
            value = kw.value
            empty = (isinstance(value, (ast.Tuple, ast.List)) and not value.elts) or is_none(value)
            return not empty
        if kw.arg is None:  # **options: cannot tell
            return True
    return False


def unfiltered_scan(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "scan"
        and not has_filter(node)
    )


def deletes(node: ast.AST, target: str) -> bool:
    """`<name>.delete(target)`: ctx.delete of the loop's document."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "delete"
        and isinstance(node.func.value, ast.Name)
        and len(node.args) >= 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == target
    )


_STOPS = (ast.Continue, ast.Break, ast.Return, ast.Raise)
_TRIES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())
_BRANCHES = (ast.If, ast.Match, ast.While, ast.For, ast.AsyncFor) + _TRIES


def may_stop(stmt: ast.stmt) -> bool:
    """Whether a branching statement can skip the rest of the loop body."""
    return any(isinstance(n, _STOPS) for n in own_nodes(stmt))


def unconditional_deletes(body: Iterable[ast.stmt], target: str) -> Iterator[ast.Call]:
    """Deletes of `target` reached on every pass through `body`: not under a branch, and
    after no statement that can skip them (`if ...: continue`)."""
    for stmt in body:
        if isinstance(stmt, _STOPS):
            return
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from unconditional_deletes(stmt.body, target)
            continue
        if isinstance(stmt, _BRANCHES):
            if isinstance(stmt, _TRIES):
                yield from unconditional_deletes(stmt.body, target)
            if may_stop(stmt):
                return
            continue
        for node in expression_nodes(stmt):
            if deletes(node, target):
                yield node  # type: ignore[misc]


def expression_nodes(stmt: ast.AST) -> Iterator[ast.AST]:
    """The nodes evaluated every time `stmt` runs: not the branches of `a if c else b`,
    the right side of `and`/`or`, comprehensions or lambdas."""
    stack = [stmt]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(
            node,
            (
                ast.IfExp,
                ast.Lambda,
                ast.FunctionDef,
                ast.AsyncFunctionDef,
                ast.ClassDef,
                ast.GeneratorExp,
                ast.ListComp,
                ast.SetComp,
                ast.DictComp,
            ),
        ):
            continue
        if isinstance(node, ast.BoolOp):
            stack.append(node.values[0])
            continue
        stack.extend(ast.iter_child_nodes(node))
