"""Migration scripts: load `migrations/NNNN_slug.py` files and check the revision chain.

`build_chain` is pure (scripts built inline in tests); `load_chain` reads a directory.
Nothing here prints, exits, or touches Firestore or the state file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from fsmigrate.distributed import Forms, forms_of, local_plan
from fsmigrate.errors import (
    DuplicateRevision,
    MissingDownRevision,
    MultipleHeads,
    NoBase,
    RevisionCycle,
    ScriptError,
    ScriptImportError,
    ScriptInvalid,
    UnknownRevision,
    UsageError,
)
from fsmigrate.scripts.archive import problem as archive_problem

# A migration script's file name: 4 ASCII digits (the revision), "_", a slug of printable
# characters, ".py" (lowercase). See `name_kind` for the rest of the directory.
SCRIPT_NAME = re.compile(r"^([0-9]{4})_(.+)\.py$")
EXPECTED_NAME = (
    "expected NNNN_slug.py (4 digits, an underscore, a name, lowercase .py), "
    "or a name starting with _ for a helper module"
)
_NO_VALUE = object()


class ScriptMisnamed(ScriptInvalid):
    """Python files in the migrations directory that are neither scripts nor helpers.

    Such a file would never run and nothing would say so; refused instead (exit 1).
    One line naming every such file; control characters in names are shown escaped.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.path = self.paths[0]
        if len(self.paths) == 1:
            self.problem = f"is not a migration script name: {EXPECTED_NAME}; rename it"
        else:
            self.problem = f"are not migration script names: {EXPECTED_NAME}; rename them"
        names = ", ".join(_printable(str(p)) for p in self.paths)
        ScriptError.__init__(self, f"{names} {self.problem}")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def name_kind(name: str) -> str:
    """What a file named `name` in the migrations directory is to the loader.

    - `script`: `NNNN_slug.py`, loaded as a migration;
    - `ignored`: not Python (README.md, *.pyc, *.py.orig...), a helper or package file
      starting with `_` (`_helpers.py`, `__init__.py`), or a hidden file starting with `.`
      (editor lock and swap files, macOS `._` files);
    - `misnamed`: any other `.py` name, in any letter case (`0006-bad-name.py`, `6_x.py`,
      `00006_x.py`, `0006.py`, `0006_.py`, `abc.py`, `0006_x.PY`): refused.
    """
    if name.startswith((".", "_")) or not name.lower().endswith(".py"):
        return "ignored"
    match = SCRIPT_NAME.match(name)
    if match and match.group(2).isprintable() and match.group(2).strip():
        return "script"
    return "misnamed"


def checksum_source(source: str | bytes) -> str:
    """sha256 hex of `source` with CRLF / CR line endings normalised to LF."""
    data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    return hashlib.sha256(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")).hexdigest()


@dataclass(frozen=True)
class Script:
    revision: str
    down_revision: str | None
    path: Path
    doc: str
    checksum: str
    plan: Callable = field(compare=False, repr=False)
    module: ModuleType | None = field(default=None, compare=False, repr=False)
    archive_spec: object = field(default=None, compare=False, repr=False)  # without a module
    expected_ops: int | None = field(default=None, compare=False)  # known before planning

    @property
    def repeatable(self) -> bool:
        """`repeatable = True`: the plan is idempotent and `fsmigrate rerun` may run it again."""
        return bool(getattr(self.module, "repeatable", False))

    @property
    def archive(self) -> object:
        """`archive = "full"` (default), `"paths"` or a function(data) -> dict of the fields
        to keep: what the state file keeps of the documents it changes (fsmigrate.scripts.archive)."""
        if self.archive_spec is not None:
            return self.archive_spec
        return getattr(self.module, "archive", "full")

    @property
    def description(self) -> str:
        """First non-empty line of the docstring."""
        return next((line.strip() for line in self.doc.splitlines() if line.strip()), "")

    @property
    def forms(self) -> Forms:
        """The forms the script declares (fsmigrate.distributed): plan, each, keyed."""
        return forms_of(self.module)[0] if self.module is not None else Forms(plan=self.plan)

    @property
    def slug(self) -> str:
        return self.path.stem


class Chain:
    """Scripts ordered base -> head. Build it with `build_chain`, which checks it."""

    def __init__(self, scripts: Sequence[Script] = ()) -> None:
        self.scripts: list[Script] = list(scripts)
        self._index = {s.revision: s for s in self.scripts}

    @property
    def head(self) -> str | None:
        return self.scripts[-1].revision if self.scripts else None

    def __iter__(self) -> Iterator[Script]:
        return iter(self.scripts)

    def __len__(self) -> int:
        return len(self.scripts)

    def __contains__(self, revision: object) -> bool:
        return revision in self._index

    def __repr__(self) -> str:
        return f"Chain({' -> '.join(self.revisions())})"

    def get(self, revision: str) -> Script:
        try:
            return self._index[revision]
        except KeyError:
            raise UnknownRevision(revision) from None

    def revisions(self) -> list[str]:
        return [s.revision for s in self.scripts]

    def pending(self, applied: Collection[str], to: str | None = None) -> list[Script]:
        """Scripts not in `applied`, in order, up to and including `to` (default: head).

        Revisions in `applied` that are no longer on disk are ignored here.
        """
        if to is not None:
            self.get(to)
        done = set(applied)
        result: list[Script] = []
        for script in self.scripts:
            if script.revision not in done:
                result.append(script)
            if script.revision == to:
                break
        return result


def build_chain(scripts: Iterable[Script]) -> Chain:
    """Order `scripts` base -> head, or raise the ScriptError that says what is wrong."""
    scripts = sorted(scripts, key=lambda s: (s.revision, str(s.path)))
    by_rev: dict[str, Script] = {}
    for s in scripts:
        if s.revision in by_rev:
            raise DuplicateRevision(
                s.revision, [x.path for x in scripts if x.revision == s.revision]
            )
        by_rev[s.revision] = s
    for s in scripts:
        if s.down_revision is not None and s.down_revision not in by_rev:
            raise MissingDownRevision(s.revision, s.down_revision, s.path)
    _check_cycles(scripts, by_rev)

    children: dict[str | None, list[Script]] = {}
    for s in scripts:
        children.setdefault(s.down_revision, []).append(s)
    heads = [s for s in scripts if s.revision not in children]
    if len(heads) > 1:
        raise MultipleHeads([h.revision for h in heads], [h.path for h in heads])
    if scripts and None not in children:  # unreachable after the cycle check; kept as a guard
        raise NoBase([s.path for s in scripts])

    ordered: list[Script] = []
    current: str | None = None
    while current in children:
        (nxt,) = children[current]  # one head and no cycle: every link has one child
        ordered.append(nxt)
        current = nxt.revision
    return Chain(ordered)


def _check_cycles(scripts: Sequence[Script], by_rev: dict[str, Script]) -> None:
    """Each script has at most one parent: follow parents; a revisit inside one walk is a cycle."""
    safe: set[str] = set()  # revisions whose ancestry reaches a base
    for start in scripts:
        walk: list[str] = []
        rev: str | None = start.revision
        while rev is not None and rev not in safe:
            if rev in walk:
                cycle = walk[walk.index(rev) :] + [rev]
                raise RevisionCycle(cycle, [by_rev[r].path for r in cycle[:-1]])
            walk.append(rev)
            rev = by_rev[rev].down_revision
        safe.update(walk)


# ---- loading from disk -------------------------------------------------------------


def load_chain(directory: Path) -> Chain:
    """Load every `NNNN_slug.py` in `directory` and build the chain.

    Subdirectories are not looked into. A `.py` file that is neither a script nor a helper
    (`name_kind`) is refused with ScriptMisnamed before any script is imported.
    """
    directory = Path(directory)
    if not directory.exists():
        raise UsageError(
            f"migrations directory {directory} does not exist; create it with "
            '`fsmigrate new "..."` or pass --migrations DIR'
        )
    if not directory.is_dir():
        raise UsageError(
            f"migrations directory {directory} is not a directory; pass --migrations DIR"
        )
    package = (
        "fsmigrate_migrations_" + hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:12]
    )
    entries = sorted(p for p in directory.iterdir() if not p.is_dir())
    misnamed = [p for p in entries if name_kind(p.name) == "misnamed"]
    if misnamed:
        raise ScriptMisnamed(misnamed)
    paths = [p for p in entries if name_kind(p.name) == "script"]
    for p in paths:
        if not p.is_file():  # a dangling symlink, a FIFO...: never skipped in silence
            raise ScriptInvalid(p, "is not a regular file (a broken symlink?)")
    return build_chain(load_script(p, f"{package}.{p.stem}") for p in paths)


def load_script(path: Path, module_name: str | None = None) -> Script:
    """Import one migration file (fresh from disk each time) and validate it."""
    try:
        data = path.read_bytes()
        module = exec_module(path, data, module_name or f"fsmigrate_migration_{path.stem}")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SyntaxError, ImportError, SystemExit, anything
        raise ScriptImportError(path, exc) from exc

    doc = module.__doc__
    if not isinstance(doc, str) or not doc.strip():
        raise ScriptInvalid(
            path,
            "has no module docstring; start the file with a docstring "
            "that says what the migration does",
        )
    revision = getattr(module, "revision", _NO_VALUE)
    if revision is _NO_VALUE or not isinstance(revision, str):
        raise ScriptInvalid(path, 'needs `revision = "NNNN"` (a string)')
    down = getattr(module, "down_revision", _NO_VALUE)
    if down is _NO_VALUE or not (down is None or isinstance(down, str)):
        raise ScriptInvalid(
            path,
            'needs `down_revision = "NNNN"` (a string) or '
            "`down_revision = None` for the first migration",
        )
    if not isinstance(getattr(module, "repeatable", False), bool):
        raise ScriptInvalid(path, "`repeatable` must be True or False")
    bad_archive = archive_problem(getattr(module, "archive", "full"))
    if bad_archive:
        raise ScriptInvalid(path, bad_archive)
    forms, problem = forms_of(module)
    if problem:
        raise ScriptInvalid(path, problem)
    plan = local_plan(forms)
    match = SCRIPT_NAME.match(path.name)
    if match and match.group(1) != revision:
        raise ScriptInvalid(
            path,
            f"file name starts with {match.group(1)} but revision is "
            f"{revision!r}; rename the file or fix the revision",
        )
    return Script(revision, down, path, doc.strip(), checksum_source(data), plan, module)


def exec_module(path: Path, data: bytes, name: str) -> ModuleType:
    """Run `data` as module `name`, without bytecode caches and without leaving traces.

    The module (and any helper it imports from its own directory) is in sys.modules and
    the directory on sys.path only while it runs, so the next load sees edits on disk.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    code = compile(data, str(path), "exec", dont_inherit=True)
    folder = path.parent.resolve()
    entry = str(folder)
    before = set(sys.modules)
    sys.modules[name] = module
    sys.path.insert(0, entry)
    try:
        exec(code, module.__dict__)
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
        for key in set(sys.modules) - before:
            if key == name or _is_under(sys.modules.get(key), folder):
                sys.modules.pop(key, None)
    return module


def _is_under(module: ModuleType | None, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        return False
    try:
        return Path(file).resolve().is_relative_to(folder)
    except OSError:
        return False


# ---- new scripts -------------------------------------------------------------------


def slugify(message: str) -> str:
    """'Delete legacy heartbeats!' -> 'delete_legacy_heartbeats' (max 50 chars)."""
    text = unicodedata.normalize("NFKD", message).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:50].strip("_")
    if not slug:
        raise UsageError(
            f"message {message!r} has no letters or digits to name the file with; "
            'pass a description, e.g. `fsmigrate new "delete legacy heartbeats"`'
        )
    return slug


TEMPLATE = '''"""{message}

Describe here what this migration changes and why (the first line is the one-line description).
"""
from __future__ import annotations

revision = "{revision}"
down_revision = {down_revision}


def plan(ctx):
    """Yield the operations of this migration. Nothing is written while planning."""
    # How to use ctx (each write is an operation you yield):
    #
    #   for doc in ctx.scan("collection"):          # every document of a collection
    #       if should_go(doc):
    #           yield ctx.delete(doc)
    #       else:
    #           yield ctx.update(doc, {{"field": value}})
    #
    #   yield ctx.set("col/id", {{"field": value}})      # create or overwrite a document
    #   yield ctx.create("col/id", {{"field": value}})   # fails if the document exists
    #   current = ctx.get("col/id")                      # read one document
    #   ctx.note("text")                                 # add a note to the plan / audit
    yield from ()
'''


def new_script(directory: Path, message: str) -> Path:
    """Write the next `NNNN_<slug>.py` on top of the current head; return its path."""
    directory = Path(directory)
    slug = slugify(message)
    directory.mkdir(parents=True, exist_ok=True)
    chain = load_chain(directory)
    number = max((int(r) for r in chain.revisions()), default=0) + 1
    if number > 9999:
        raise UsageError(f"{directory} already has revision 9999; no 4-digit revision is left")
    revision = f"{number:04d}"
    target = directory / f"{revision}_{slug}.py"
    if target.exists():
        raise UsageError(f"{target} already exists; choose another message")
    text = message.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    source = TEMPLATE.format(
        message=text, revision=revision, down_revision=f'"{chain.head}"' if chain.head else "None"
    )
    with open(target, "x", encoding="utf-8", newline="\n") as f:
        f.write(source)
    return target
