"""`fsmigrate rebase`: move this branch's migrations on top of the current head.

Two branches each added migration 0005. After merging, the directory holds both
`0005_theirs.py` and `0005_mine.py` (a duplicate revision). Rebasing `0005_mine.py` gives it
(and this branch's scripts after it) the next free numbers: the file is renamed with its
slug kept, `revision` is rewritten, and the first one's `down_revision` is set to the head
of the other scripts. A revision applied anywhere the caller can see (the state file, the
target's markers) is refused: it is not only this branch's any more.

Nothing here reaches Firestore or the state file: the caller passes what is applied.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fsmigrate.errors import UsageError
from fsmigrate.scripts.loader import Script, build_chain, load_script, name_kind


@dataclass(frozen=True)
class Move:
    """One script renumbered: from `old` to `new` (paths), its revisions before and after."""

    old: Path
    new: Path
    revision: str
    new_revision: str
    down_revision: Optional[str]
    new_down_revision: Optional[str]

    def to_json(self) -> dict[str, Optional[str]]:
        return {
            "file": str(self.old),
            "new_file": str(self.new),
            "revision": self.revision,
            "new_revision": self.new_revision,
            "down_revision": self.down_revision,
            "new_down_revision": self.new_down_revision,
        }


def load_all(directory: Path) -> list[Script]:
    """Every script of `directory`, each loaded on its own (a duplicate revision, the
    reason to rebase, does not stop this)."""
    if not Path(directory).is_dir():
        raise UsageError(f"migrations directory {directory} does not exist; pass --migrations DIR")
    paths = sorted(
        p for p in Path(directory).iterdir() if p.is_file() and name_kind(p.name) == "script"
    )
    return [load_script(p, f"fsmigrate_rebase_{i}_{p.stem}") for i, p in enumerate(paths)]


def _find(scripts: Sequence[Script], name: str) -> Script:
    """A script named by revision (when one script has it) or by file name or stem."""
    stem = Path(name).name.removesuffix(".py")
    by_file = [s for s in scripts if s.path.stem == stem]
    if by_file:
        return by_file[0]
    by_rev = [s for s in scripts if s.revision == name]
    if not by_rev:
        raise UsageError(
            f"no migration {name!r} in {scripts[0].path.parent if scripts else 'the directory'}; "
            "name it by revision or by file name"
        )
    if len(by_rev) > 1:
        files = ", ".join(s.path.name for s in by_rev)
        raise UsageError(
            f"revision {name} is {len(by_rev)} scripts ({files}); name this branch's by its "
            f"file, e.g. `fsmigrate rebase {by_rev[-1].path.name}`"
        )
    return by_rev[0]


def choose(scripts: Sequence[Script], names: Sequence[str], follow: bool = True) -> list[Script]:
    """The scripts to move: the named ones, in order, then (`follow`) the scripts after the
    last one on this branch. A script follows a moved one when its down_revision is that
    one's revision and no other script has that revision (then it could follow either:
    name it)."""
    if not names:
        raise UsageError("name the first migration of this branch to move")
    moving = [_find(scripts, n) for n in names]
    if len({s.path for s in moving}) != len(moving):
        raise UsageError("a migration is named twice")
    counts: dict[str, int] = {}
    for s in scripts:
        counts[s.revision] = counts.get(s.revision, 0) + 1
    while follow:
        last = moving[-1]
        after = [s for s in scripts if s.down_revision == last.revision and s not in moving]
        if not after:
            return moving
        if counts[last.revision] > 1:
            twins = ", ".join(s.path.name for s in scripts if s.revision == last.revision)
            follows = ", ".join(s.path.name for s in after)
            raise UsageError(
                f"{follows} follow(s) revision {last.revision}, which several scripts have "
                f"({twins}): name this branch's in order, e.g. `fsmigrate rebase "
                f"{' '.join(s.path.name for s in moving)} {after[0].path.name}`, or pass "
                "--only to move just the named ones"
            )
        if len(after) > 1:
            raise UsageError(
                f"{', '.join(s.path.name for s in after)} all follow {last.path.name}; "
                "name this branch's in order"
            )
        moving.append(after[0])
    return moving


def plan(
    scripts: Sequence[Script],
    moving: Sequence[Script],
    applied: Mapping[str, Collection[str]],
) -> list[Move]:
    """The renames that put `moving` on top of the other scripts' head. `applied`: for
    each place the caller looked (the state file, a target's markers), the checksums of
    the revisions applied there; a moving script applied anywhere is refused."""
    for script in moving:
        for where, checksums in applied.items():
            if script.checksum in checksums:
                raise UsageError(
                    f"{script.path.name} (revision {script.revision}) is applied in {where}: "
                    "it is not only this branch's any more; leave it where it is and move "
                    "the other branch's migration instead"
                )
    rest = [s for s in scripts if s not in moving]
    chain = build_chain(rest)  # the other scripts must make one line: their head is ours
    head = chain.head
    number = max((int(s.revision) for s in rest), default=0)
    moves: list[Move] = []
    previous = head
    renamed: dict[str, str] = {}
    for script in moving:
        number += 1
        if number > 9999:
            raise UsageError("no 4-digit revision is left to renumber into")
        new_revision = f"{number:04d}"
        slug = script.path.stem.partition("_")[2]
        down = script.down_revision
        if script is moving[0]:
            new_down = previous
        else:
            new_down = renamed.get(down or "", down)
        moves.append(
            Move(
                old=script.path,
                new=script.path.with_name(f"{new_revision}_{slug}.py"),
                revision=script.revision,
                new_revision=new_revision,
                down_revision=down,
                new_down_revision=new_down,
            )
        )
        renamed[script.revision] = new_revision
        previous = new_revision
    old_paths = {m.old for m in moves}
    for move in moves:
        if move.new.exists() and move.new not in old_paths:
            raise UsageError(f"{move.new} exists already; nothing was renamed")
    return [m for m in moves if (m.old, m.down_revision) != (m.new, m.new_down_revision)]


def rewrite_source(source: str, path: Path, revision: str, down: Optional[str]) -> str:
    """`source` with its module-level `revision` and `down_revision` assignments set to
    the new values (only those two string literals change)."""
    tree = ast.parse(source, filename=str(path))
    targets: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                targets[target.id] = node.value
    for name in ("revision", "down_revision"):
        value = targets.get(name)
        if value is None or not isinstance(value, ast.Constant):
            raise UsageError(
                f"{path}: `{name} = ...` is not a plain literal at the top of the file; "
                "renumber it by hand"
            )
    lines = source.splitlines(keepends=True)
    edits = sorted(
        [(targets["revision"], _literal(revision)), (targets["down_revision"], _literal(down))],
        key=lambda e: (e[0].lineno, e[0].col_offset),
        reverse=True,
    )
    for literal, text in edits:
        if literal.end_lineno != literal.lineno or literal.end_col_offset is None:
            raise UsageError(f"{path}: the revision literal spans lines; renumber it by hand")
        line = lines[literal.lineno - 1].encode("utf-8")
        start, end = literal.col_offset, literal.end_col_offset  # byte offsets
        lines[literal.lineno - 1] = (line[:start] + text.encode() + line[end:]).decode("utf-8")
    return "".join(lines)


def _literal(value: Optional[str]) -> str:
    return "None" if value is None else f'"{value}"'


def apply(moves: Sequence[Move]) -> None:
    """Write each moved script under its new name, checked by loading it, then remove the
    old file. Nothing is removed until every new file is written and loads."""
    written: list[tuple[Path, Path]] = []  # (temporary file, where it goes)
    try:
        for move in moves:
            source = move.old.read_bytes().decode("utf-8")
            text = rewrite_source(source, move.old, move.new_revision, move.new_down_revision)
            fd, tmp = tempfile.mkstemp(dir=move.old.parent, prefix=".rebase-", suffix=".py")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            written.append((Path(tmp), move.new))
            os.chmod(tmp, move.old.stat().st_mode & 0o777)
            script = load_script(Path(tmp), f"fsmigrate_rebased_{move.new.stem}")
            if (script.revision, script.down_revision) != (
                move.new_revision,
                move.new_down_revision,
            ):
                raise UsageError(f"{move.new}: rewriting the revision did not take; nothing moved")
    except BaseException:
        for tmp_path, _ in written:
            tmp_path.unlink(missing_ok=True)
        raise
    # every new text is written and loads: put them in place, then remove the old files
    # (a crash in between leaves both: a duplicate revision the loader names, never a
    # lost script)
    for tmp_path, new in written:
        os.replace(tmp_path, new)
    targets = {new for _, new in written}
    for move in moves:
        if move.old not in targets:
            move.old.unlink()
