"""The checks of `fsmigrate lint`, on a script's syntax tree (nothing is imported or run).

`check(source, path)` returns the findings of one file; `header(source, path)` its literal
revision and down_revision for the chain check. Every rule is in `RULES`, with its code,
name, severity and what it is for; the README (Lint) documents each one.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Union

from . import scripts

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str
    silenceable: bool = True


RULES: dict[str, Rule] = {r.code: r for r in [
    Rule("FSM001", "syntax-error", ERROR, "the file does not parse (or is not UTF-8)",
         silenceable=False),
    Rule("FSM002", "useless-allow", WARNING,
         "an allow comment names no rule, or silences nothing on its line"),
    Rule("FSM101", "client-write", ERROR,
         "a write through the Firestore client instead of an operation yielded to ctx"),
    Rule("FSM102", "own-client", ERROR,
         "the script creates its own Firestore client instead of reading through ctx"),
    Rule("FSM201", "delete-every-document", ERROR,
         "every document of an unfiltered scan is deleted, with no condition in between"),
    Rule("FSM301", "plan-not-generator", ERROR,
         "plan(ctx) is missing, async, or does not yield its operations"),
    Rule("FSM302", "missing-docstring", ERROR, "the script has no module docstring"),
    Rule("FSM303", "revision-name", ERROR,
         "revision missing, not a string literal, or unlike the file name NNNN_slug.py"),
    Rule("FSM304", "down-revision-literal", ERROR,
         "down_revision missing, or not a string literal or None"),
    Rule("FSM305", "revision-chain", ERROR,
         "duplicate revisions, an unknown down_revision, several heads, or a cycle"),
    Rule("FSM401", "non-deterministic", WARNING,
         "random, uuid1/uuid4, now()/today()/time(): the dry-run, the reviewed plan and a "
         "resumed apply can differ"),
]}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    code: str
    message: str

    @property
    def severity(self) -> str:
        return RULES[self.code].severity

    @property
    def name(self) -> str:
        return RULES[self.code].name

    def to_json(self) -> dict:
        return {"path": self.path, "line": self.line, "column": self.column,
                "code": self.code, "name": self.name, "severity": self.severity,
                "message": self.message}


@dataclass(frozen=True)
class Header:
    """A script's literal revision and down_revision (None when not a literal)."""

    path: str
    revision: Optional[str]
    down_revision: Optional[str]
    down_known: bool  # down_revision is a string literal or None
    down_line: int


# Method calls that only exist on the Firestore client's objects.
CLIENT_WRITERS = {"batch", "bulk_writer", "transaction", "recursive_delete"}
# Writes, when called on a document/collection reference, batch or transaction.
WRITE_METHODS = {"set", "update", "delete", "create", "add", "commit", "recursive_delete"}
# Calls and attributes that give a reference (or a client, batch, transaction).
REF_CALLS = {"document", "collection", "collection_group", "collections", "list_documents",
             "batch", "bulk_writer", "transaction"}
REF_ATTRS = {"reference", "_reference", "client", "_client", "parent"}
NON_DETERMINISTIC = {"uuid.uuid1", "uuid.uuid4", "datetime.datetime.now",
                     "datetime.datetime.utcnow", "datetime.datetime.today",
                     "datetime.date.today", "time.time", "time.time_ns", "os.urandom"}
# Functions that yield the operations of a script, in each of its forms.
PRODUCERS = ("plan", "each", "merge")
Def = Union[ast.FunctionDef, ast.AsyncFunctionDef]


def check(source: str, path: str, *, scripts_rules: bool = True) -> list[Finding]:
    """Every finding of one file; a file that does not parse gets FSM001 only."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        col = getattr(exc, "offset", None) or 1
        msg = getattr(exc, "msg", None) or str(exc)
        return [Finding(path, line, col, "FSM001", f"does not parse: {msg}")]
    checker = _Checker(tree, path)
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
    rev = _assigned(tree, "revision")
    down = _assigned(tree, "down_revision")
    revision = rev.value if rev is not None and _is_str(rev) else None
    down_known = down is not None and (_is_str(down) or _is_none(down))
    return Header(path, revision, down.value if down_known and _is_str(down) else None,
                  down_known, down.lineno if down is not None else 1)


# ---- helpers on the tree -------------------------------------------------------------------


def _assigned(tree: ast.Module, name: str) -> Optional[ast.expr]:
    """The value last assigned to a module-level `name` (positions kept), or None."""
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            value = node.value
    return value


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function body, not descending into nested functions and classes."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                 ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _is_generator(fn: Def) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(fn))


def _show(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_client_constructor(name: Optional[str]) -> bool:
    if not name:
        return False
    parts = name.split(".")
    if parts[:2] == ["google", "cloud"] and len(parts) >= 4 and \
            parts[2].startswith("firestore") and parts[-1] in ("Client", "AsyncClient"):
        return True
    return name in ("firebase_admin.firestore.client", "firebase_admin.firestore_async.client")


class _Names:
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


# ---- the checks ----------------------------------------------------------------------------


class _Checker:
    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.names = _Names(tree)
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
                    if name.startswith("google.cloud.firestore") and \
                            name.rsplit(".", 1)[-1] in ("transactional", "async_transactional"):
                        yield self.finding(deco, "FSM101", _client_write(f"@{_show(target)}"))
        yield from self._delete_every_document()

    def _call(self, node: ast.Call) -> Iterator[Finding]:
        name = self.names.resolve(node.func)
        if _is_client_constructor(name):
            yield self.finding(node, "FSM102", (
                f"`{_show(node)}` creates a Firestore client of its own: read through ctx "
                "(scan, get, get_many), which uses the run's project, database and retries; "
                "writes made with another client are not planned, guarded or archived"))
        if name is not None and self._non_deterministic(name, node):
            yield self.finding(node, "FSM401", (
                f"`{_show(node)}` differs from run to run: operations built from it differ "
                "between the dry-run, the reviewed plan and a resumed apply; derive values "
                "from the data (or a fixed constant), or acknowledge it with "
                "`# fsmigrate: allow FSM401`"))
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in CLIENT_WRITERS or (func.attr in WRITE_METHODS
                                               and self._is_ref(func.value)):
                yield self.finding(node, "FSM101", _client_write(f"{_show(func)}(...)"))

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
            return (isinstance(node.func, ast.Attribute) and node.func.attr in REF_CALLS) \
                or _is_client_constructor(self.names.resolve(node.func))
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
                    pairs = [(i.optional_vars, i.context_expr) for i in node.items
                             if i.optional_vars is not None]
                for target, value in pairs:
                    if isinstance(target, ast.Name) and self._is_ref(value):
                        self.refs.add(target.id)
            if len(self.refs) == before:
                return

    # -- FSM201 --

    def _delete_every_document(self) -> Iterator[Finding]:
        scans = {t.id for node in ast.walk(self.tree) if isinstance(node, ast.Assign)
                 and _unfiltered_scan(node.value) for t in node.targets
                 if isinstance(t, ast.Name)}

        def every(node: ast.expr) -> Optional[str]:
            if _unfiltered_scan(node):
                return _show(node)
            if isinstance(node, ast.Name) and node.id in scans:
                return node.id
            return None

        for node in ast.walk(self.tree):
            if isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.target, ast.Name):
                scan = every(node.iter)
                if scan is not None:
                    for call in _unconditional_deletes(node.body, node.target.id):
                        yield self._delete_all(call, scan)
            elif isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp)) \
                    and len(node.generators) == 1:
                gen = node.generators[0]
                scan = every(gen.iter)
                if scan is not None and not gen.ifs and isinstance(gen.target, ast.Name) \
                        and _deletes(node.elt, gen.target.id):
                    yield self._delete_all(node.elt, scan)
        yield from self._each_deletes_all()

    def _each_deletes_all(self) -> Iterator[Finding]:
        """The per-document form: an unfiltered `source = scan(...)` and an `each(ctx,
        doc)` that deletes `doc` with no condition."""
        source = _assigned(self.tree, "source")
        if source is None or not isinstance(source, ast.Call) or _has_filter(source):
            return
        if (self.names.resolve(source.func) or "").rsplit(".", 1)[-1] != "scan":
            return
        for fn in self.tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "each" and len(fn.args.args) >= 2:
                for call in _unconditional_deletes(fn.body, fn.args.args[1].arg):
                    yield self._delete_all(call, _show(source))

    def _delete_all(self, node: ast.AST, scan: str) -> Finding:
        return self.finding(node, "FSM201", (
            f"deletes every document of `{scan}` with no condition in between: add the "
            "condition (or a where= filter), or acknowledge it with "
            "`# fsmigrate: allow FSM201` on this line"))

    # -- script rules: migration scripts only --

    def script_rules(self) -> Iterator[Finding]:
        name = self.path.replace("\\", "/").rsplit("/", 1)[-1]
        if not ast.get_docstring(self.tree):
            yield self.finding(None, "FSM302", (
                "has no module docstring: start the script with one that says what it "
                "changes and why (its first line is the migration's description)"))
        yield from self._revision(name)
        down = _assigned(self.tree, "down_revision")
        if down is None:
            yield self.finding(None, "FSM304", 'has no `down_revision = "NNNN"` (or `= None` '
                                               "for the first migration)")
        elif not (_is_str(down) or _is_none(down)):
            yield self.finding(down, "FSM304", (
                f"down_revision is `{_show(down)}`, not a literal: write the previous "
                'revision as a string ("0003") or None, so the chain can be read without '
                "running the script"))
        yield from self._producers()

    def _revision(self, name: str) -> Iterator[Finding]:
        if scripts.name_kind(name) == "misnamed":
            yield self.finding(None, "FSM303", (
                f"{name} is not a migration script name: {scripts.EXPECTED_NAME}"))
        rev = _assigned(self.tree, "revision")
        if rev is None:
            yield self.finding(None, "FSM303", 'has no `revision = "NNNN"`')
            return
        if not _is_str(rev):
            yield self.finding(rev, "FSM303", f"revision is `{_show(rev)}`, not a string "
                                              'literal such as "0004"')
            return
        match = scripts.SCRIPT_NAME.match(name)
        if match and match.group(1) != rev.value:
            yield self.finding(rev, "FSM303", (
                f"revision is {rev.value!r} but the file name starts with {match.group(1)}: "
                "rename the file or fix the revision"))

    def _producers(self) -> Iterator[Finding]:
        defs = {n.name: n for n in self.tree.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assigned = {t.id for n in self.tree.body if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        producers = [defs[p] for p in PRODUCERS if p in defs]
        if not producers and "plan" not in assigned:
            yield self.finding(None, "FSM301", "has no `def plan(ctx):` that yields the "
                                               "migration's operations")
        for fn in producers:
            args = "ctx" if fn.name == "plan" else "ctx, doc" if fn.name == "each" \
                else "ctx, key, docs"
            if isinstance(fn, ast.AsyncFunctionDef):
                yield self.finding(fn, "FSM301", (
                    f"`{fn.name}` is async: write `def {fn.name}({args}):`, a plain generator "
                    "that yields each operation"))
            elif not _is_generator(fn):
                yield self.finding(fn, "FSM301", (
                    f"`{fn.name}({args})` does not yield: yield each operation as it is "
                    "found (a returned list is built whole in memory before the first "
                    "batch, and is not streamed)"))


def _client_write(what: str) -> str:
    return (f"`{what}` writes through the Firestore client, around fsmigrate: yield "
            "ctx.set / ctx.update / ctx.delete / ctx.create instead, so the write is in the "
            "dry-run, guarded by a precondition and archived")


def _has_filter(call: ast.Call) -> bool:
    for kw in call.keywords:
        if kw.arg == "where":
            value = kw.value
            empty = (isinstance(value, (ast.Tuple, ast.List)) and not value.elts) \
                or _is_none(value)
            return not empty
        if kw.arg is None:  # **options: cannot tell
            return True
    return False


def _unfiltered_scan(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr == "scan" and not _has_filter(node)


def _deletes(node: ast.AST, target: str) -> bool:
    """`<name>.delete(target)`: ctx.delete of the loop's document."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr == "delete" and isinstance(node.func.value, ast.Name) \
        and len(node.args) >= 1 and isinstance(node.args[0], ast.Name) \
        and node.args[0].id == target


_STOPS = (ast.Continue, ast.Break, ast.Return, ast.Raise)
_TRIES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())
_BRANCHES = (ast.If, ast.Match, ast.While, ast.For, ast.AsyncFor) + _TRIES


def _may_stop(stmt: ast.stmt) -> bool:
    """Whether a branching statement can skip the rest of the loop body."""
    return any(isinstance(n, _STOPS) for n in _own_nodes(stmt))


def _unconditional_deletes(body: Iterable[ast.stmt], target: str) -> Iterator[ast.Call]:
    """Deletes of `target` reached on every pass through `body`: not under a branch, and
    after no statement that can skip them (`if ...: continue`)."""
    for stmt in body:
        if isinstance(stmt, _STOPS):
            return
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from _unconditional_deletes(stmt.body, target)
            continue
        if isinstance(stmt, _BRANCHES):
            if isinstance(stmt, _TRIES):
                yield from _unconditional_deletes(stmt.body, target)
            if _may_stop(stmt):
                return
            continue
        for node in _expression_nodes(stmt):
            if _deletes(node, target):
                yield node  # type: ignore[misc]


def _expression_nodes(stmt: ast.AST) -> Iterator[ast.AST]:
    """The nodes evaluated every time `stmt` runs: not the branches of `a if c else b`,
    the right side of `and`/`or`, comprehensions or lambdas."""
    stack = [stmt]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.IfExp, ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef, ast.GeneratorExp, ast.ListComp, ast.SetComp,
                             ast.DictComp)):
            continue
        if isinstance(node, ast.BoolOp):
            stack.append(node.values[0])
            continue
        stack.extend(ast.iter_child_nodes(node))
