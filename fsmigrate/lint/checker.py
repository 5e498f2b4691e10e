"""The lint checks of one file, on its syntax tree (nothing is imported or run).

`check(source, path)` returns the findings of one file; `header(source, path)` its literal
revision and down_revision for the chain check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Optional

from fsmigrate.lint.deletes import every_document_deleted
from fsmigrate.lint.rules import Finding, Header
from fsmigrate.lint.syntax import (
    Names,
    assigned,
    is_client_constructor,
    is_generator,
    is_none,
    is_str,
    show,
    str_value,
)
from fsmigrate.scripts import loader as scripts

# Method calls that only exist on the Firestore client's objects.
CLIENT_WRITERS = {"batch", "bulk_writer", "transaction", "recursive_delete"}
# Writes, when called on a document/collection reference, batch or transaction.
WRITE_METHODS = {"set", "update", "delete", "create", "add", "commit", "recursive_delete"}
# Calls and attributes that give a reference (or a client, batch, transaction).
REF_CALLS = {
    "document",
    "collection",
    "collection_group",
    "collections",
    "list_documents",
    "batch",
    "bulk_writer",
    "transaction",
}
REF_ATTRS = {"reference", "_reference", "client", "_client", "parent"}
NON_DETERMINISTIC = {
    "uuid.uuid1",
    "uuid.uuid4",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
    "time.time",
    "time.time_ns",
    "os.urandom",
}
# Functions that yield the operations of a script, in each of its forms.
PRODUCERS = ("plan", "each", "merge")


def check(source: str, path: str, *, scripts_rules: bool = True) -> list[Finding]:
    """Every finding of one file; a file that does not parse gets FSM001 only."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        col = getattr(exc, "offset", None) or 1
        msg = getattr(exc, "msg", None) or str(exc)
        return [Finding(path, line, col, "FSM001", f"does not parse: {msg}")]
    checker = Checker(tree, path)
    found = list(checker.code_rules())
    if scripts_rules:
        found.extend(checker.script_rules())
    unique: dict[tuple[int, int, str], Finding] = {}
    for f in found:  # a node reached twice is reported once
        unique.setdefault((f.line, f.column, f.code), f)
    return sorted(unique.values(), key=lambda f: (f.line, f.column, f.code))


def header(source: str, path: str) -> Header:
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError):
        return Header(path, None, None, False, 1)
    rev = assigned(tree, "revision")
    down = assigned(tree, "down_revision")
    down_known = down is not None and (is_str(down) or is_none(down))
    return Header(
        path,
        str_value(rev),
        str_value(down),
        down_known,
        down.lineno if down is not None else 1,
    )


class Checker:
    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.names = Names(tree)
        self.refs: set[str] = set()
        self._taint()

    def finding(self, node: Optional[ast.AST], code: str, message: str) -> Finding:
        line = getattr(node, "lineno", 1) if node is not None else 1
        col = getattr(node, "col_offset", 0) + 1 if node is not None else 1
        return Finding(self.path, line, col, code, message)

    # -- code rules: every file, helpers included --

    def code_rules(self) -> Iterator[Finding]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                yield from self._call(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for deco in node.decorator_list:
                    target = deco.func if isinstance(deco, ast.Call) else deco
                    name = self.names.resolve(target) or ""
                    if name.startswith("google.cloud.firestore") and name.rsplit(".", 1)[-1] in (
                        "transactional",
                        "async_transactional",
                    ):
                        yield self.finding(deco, "FSM101", _client_write(f"@{show(target)}"))
        for node, scan in every_document_deleted(self.tree, self.names):
            yield self._delete_all(node, scan)

    def _call(self, node: ast.Call) -> Iterator[Finding]:
        name = self.names.resolve(node.func)
        if is_client_constructor(name):
            yield self.finding(
                node,
                "FSM102",
                (
                    f"`{show(node)}` creates a Firestore client of its own: read through ctx "
                    "(scan, get, get_many), which uses the run's project, database and retries; "
                    "writes made with another client are not planned, guarded or archived"
                ),
            )
        if name is not None and self._non_deterministic(name, node):
            yield self.finding(
                node,
                "FSM401",
                (
                    f"`{show(node)}` differs from run to run: operations built from it differ "
                    "between the dry-run, the reviewed plan and a resumed apply; derive values "
                    "from the data (or a fixed constant), or acknowledge it with "
                    "`# fsmigrate: allow FSM401`"
                ),
            )
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in CLIENT_WRITERS or (
                func.attr in WRITE_METHODS and self._is_ref(func.value)
            ):
                yield self.finding(node, "FSM101", _client_write(f"{show(func)}(...)"))

    def _non_deterministic(self, name: str, node: ast.Call) -> bool:
        if name in NON_DETERMINISTIC or name.startswith("secrets."):
            return True
        if name.startswith("random."):  # random.Random(seed) and random.seed(x) are fixed
            return not (name in ("random.Random", "random.seed") and node.args)
        return False

    def _is_ref(self, node: ast.AST) -> bool:
        """Whether an expression is a Firestore reference, client, batch or transaction."""
        if isinstance(node, ast.Name):
            return node.id in self.refs
        if isinstance(node, ast.Attribute):
            return node.attr in REF_ATTRS or self._is_ref(node.value)
        if isinstance(node, ast.Call):
            return (
                isinstance(node.func, ast.Attribute) and node.func.attr in REF_CALLS
            ) or is_client_constructor(self.names.resolve(node.func))
        if isinstance(node, (ast.Subscript, ast.Await, ast.Starred)):
            return self._is_ref(node.value)
        return False

    def _taint(self) -> None:
        """Collect the names bound anywhere in the module to a reference, client, batch or
        transaction (assignments, `with ... as`, `for` targets), to a fixed point."""
        while True:
            before = len(self.refs)
            for node in ast.walk(self.tree):
                pairs: list[tuple[ast.AST, ast.AST]] = []
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    pairs = [(node.target, node.value)]
                elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                    pairs = [(node.target, node.iter)]
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    pairs = [
                        (i.optional_vars, i.context_expr)
                        for i in node.items
                        if i.optional_vars is not None
                    ]
                for target, value in pairs:
                    if isinstance(target, ast.Name) and self._is_ref(value):
                        self.refs.add(target.id)
            if len(self.refs) == before:
                return

    def _delete_all(self, node: ast.AST, scan: str) -> Finding:
        return self.finding(
            node,
            "FSM201",
            (
                f"deletes every document of `{scan}` with no condition in between: add the "
                "condition (or a where= filter), or acknowledge it with "
                "`# fsmigrate: allow FSM201` on this line"
            ),
        )

    # -- script rules: migration scripts only --

    def script_rules(self) -> Iterator[Finding]:
        name = self.path.replace("\\", "/").rsplit("/", 1)[-1]
        if not ast.get_docstring(self.tree):
            yield self.finding(
                None,
                "FSM302",
                (
                    "has no module docstring: start the script with one that says what it "
                    "changes and why (its first line is the migration's description)"
                ),
            )
        yield from self._revision(name)
        down = assigned(self.tree, "down_revision")
        if down is None:
            yield self.finding(
                None,
                "FSM304",
                'has no `down_revision = "NNNN"` (or `= None` for the first migration)',
            )
        elif not (is_str(down) or is_none(down)):
            yield self.finding(
                down,
                "FSM304",
                (
                    f"down_revision is `{show(down)}`, not a literal: write the previous "
                    'revision as a string ("0003") or None, so the chain can be read without '
                    "running the script"
                ),
            )
        yield from self._producers()

    def _revision(self, name: str) -> Iterator[Finding]:
        if scripts.name_kind(name) == "misnamed":
            yield self.finding(
                None, "FSM303", (f"{name} is not a migration script name: {scripts.EXPECTED_NAME}")
            )
        rev = assigned(self.tree, "revision")
        if rev is None:
            yield self.finding(None, "FSM303", 'has no `revision = "NNNN"`')
            return
        revision = str_value(rev)
        if revision is None:
            yield self.finding(
                rev, "FSM303", f'revision is `{show(rev)}`, not a string literal such as "0004"'
            )
            return
        match = scripts.SCRIPT_NAME.match(name)
        if match and match.group(1) != revision:
            yield self.finding(
                rev,
                "FSM303",
                (
                    f"revision is {revision!r} but the file name starts with {match.group(1)}: "
                    "rename the file or fix the revision"
                ),
            )

    def _producers(self) -> Iterator[Finding]:
        defs = {
            n.name: n
            for n in self.tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        assigned = {
            t.id
            for n in self.tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        producers = [defs[p] for p in PRODUCERS if p in defs]
        if not producers and "plan" not in assigned:
            yield self.finding(
                None, "FSM301", "has no `def plan(ctx):` that yields the migration's operations"
            )
        for fn in producers:
            args = (
                "ctx"
                if fn.name == "plan"
                else "ctx, doc"
                if fn.name == "each"
                else "ctx, key, docs"
            )
            if isinstance(fn, ast.AsyncFunctionDef):
                yield self.finding(
                    fn,
                    "FSM301",
                    (
                        f"`{fn.name}` is async: write `def {fn.name}({args}):`, a plain generator "
                        "that yields each operation"
                    ),
                )
            elif not is_generator(fn):
                yield self.finding(
                    fn,
                    "FSM301",
                    (
                        f"`{fn.name}({args})` does not yield: yield each operation as it is "
                        "found (a returned list is built whole in memory before the first "
                        "batch, and is not streamed)"
                    ),
                )


def _client_write(what: str) -> str:
    return (
        f"`{what}` writes through the Firestore client, around fsmigrate: yield "
        "ctx.set / ctx.update / ctx.delete / ctx.create instead, so the write is in the "
        "dry-run, guarded by a precondition and archived"
    )
