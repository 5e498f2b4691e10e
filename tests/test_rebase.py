"""`rebase` on files alone (no target: --local): what moves, what the files become."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.errors import UsageError
from fsmigrate.scripts import loader
from fsmigrate.scripts.rebase import rewrite_source


def script(folder: Path, name: str, revision: str, down: str | None, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(
        f'"""{name}."""\nrevision = "{revision}"  # keep me\ndown_revision = {down!r}\n'
        f"{extra}\ndef plan(ctx):\n    yield from ()\n"
    )
    return path


def test_two_heads_the_followers_come_along_and_a_file_may_keep_its_name(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "migrations"
    script(folder, "0001_base", "0001", None)
    script(folder, "0002_theirs", "0002", "0001")
    script(folder, "0003_mine", "0003", "0001")  # branched from 0001: two heads
    script(folder, "0004_mine_too", "0004", "0003")
    with pytest.raises(Exception, match="2 heads"):
        loader.load_chain(folder)
    cfg = api.Config(migrations=folder, state=tmp_path / "state.db")
    done = api.rebase(cfg, ["0003"], local=True)
    # 0003 keeps its number and file (the next free one is 0003), only its down_revision
    # changes; 0004 already follows it and is left alone
    assert [(m.old.name, m.new.name, m.new_down_revision) for m in done.moves] == [
        ("0003_mine.py", "0003_mine.py", "0002")
    ]
    chain = loader.load_chain(folder)
    assert [(s.revision, s.down_revision) for s in chain] == [
        ("0001", None),
        ("0002", "0001"),
        ("0003", "0002"),
        ("0004", "0003"),
    ]
    assert (
        (folder / "0003_mine.py")
        .read_text()
        .startswith('"""0003_mine."""\nrevision = "0003"  # keep me\ndown_revision = "0002"\n')
    )
    assert not list(folder.glob(".rebase-*"))


def test_rewrite_changes_only_the_two_literals() -> None:
    source = '"""Doc."""\nrevision = \'0005\'\ndown_revision = None  # first\nx = \'0005\'\n'
    assert rewrite_source(source, Path("x.py"), "0007", "0006") == (
        '"""Doc."""\nrevision = "0007"\ndown_revision = "0006"  # first\nx = \'0005\'\n'
    )
    with pytest.raises(UsageError, match="not a plain literal"):
        rewrite_source("revision = REV\ndown_revision = None\n", Path("x.py"), "1", None)


def test_unknown_or_ambiguous_names_are_usage_errors(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    script(folder, "0001_base", "0001", None)
    script(folder, "0002_a", "0002", "0001")
    script(folder, "0002_b", "0002", "0001")
    cfg = api.Config(migrations=folder, state=tmp_path / "state.db")
    with pytest.raises(UsageError, match="revision 0002 is 2 scripts"):
        api.rebase(cfg, ["0002"], local=True)
    with pytest.raises(UsageError, match="no migration '0009'"):
        api.rebase(cfg, ["0009"], local=True)
    done = api.rebase(cfg, ["0002_b"], local=True, dry_run=True)
    assert [(m.new.name, m.new_down_revision) for m in done.moves] == [("0003_b.py", "0002")]
    assert (folder / "0002_b.py").exists() and not (folder / "0003_b.py").exists()
