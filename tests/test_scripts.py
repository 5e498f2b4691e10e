"""Tests for fsmigrate.scripts: chain building (pure), loading from disk, new scripts."""

from __future__ import annotations

import random
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsmigrate.errors import (
    DuplicateRevision,
    MissingDownRevision,
    MultipleHeads,
    RevisionCycle,
    ScriptImportError,
    ScriptInvalid,
    UnknownRevision,
    UsageError,
)
from fsmigrate.scripts.loader import (
    Chain,
    Script,
    ScriptMisnamed,
    build_chain,
    checksum_source,
    load_chain,
    new_script,
    slugify,
)


def plan(ctx):
    yield from ()


def mk(revision: str, down: str | None) -> Script:
    return Script(
        revision, down, Path(f"migrations/{revision}_x.py"), f"Migration {revision}", "0" * 64, plan
    )


def linear(n: int) -> list[Script]:
    revs = [f"{i:04d}" for i in range(1, n + 1)]
    return [mk(r, revs[i - 1] if i else None) for i, r in enumerate(revs)]


# ---- build_chain -------------------------------------------------------------------


def test_build_chain_orders_shuffled_scripts():
    scripts = linear(6)
    shuffled = scripts[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != scripts
    chain = build_chain(shuffled)
    assert chain.revisions() == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert chain.scripts == scripts
    assert chain.head == "0006" and len(chain) == 6
    assert [s.revision for s in chain] == chain.revisions()


def test_order_follows_down_revision_not_numbers():
    chain = build_chain([mk("0001", "0003"), mk("0002", "0001"), mk("0003", None)])
    assert chain.revisions() == ["0003", "0001", "0002"]


def test_empty_chain():
    chain = build_chain([])
    assert len(chain) == 0 and chain.head is None and chain.pending(set()) == []


def test_duplicate_revision_names_both_files():
    a = mk("0002", "0001")
    b = Script("0002", "0001", Path("migrations/0002_other.py"), "d", "0" * 64, plan)
    with pytest.raises(DuplicateRevision) as err:
        build_chain([mk("0001", None), a, b])
    assert "0002_x.py" in str(err.value) and "0002_other.py" in str(err.value)
    assert err.value.revision == "0002"


def test_missing_down_revision_names_file():
    with pytest.raises(MissingDownRevision) as err:
        build_chain([mk("0001", None), mk("0003", "0002")])
    assert "0003_x.py" in str(err.value) and "'0002'" in str(err.value)


def test_cycle_names_files():
    with pytest.raises(RevisionCycle) as err:
        build_chain([mk("0001", None), mk("0002", "0003"), mk("0003", "0002")])
    msg = str(err.value)
    assert "0002_x.py" in msg and "0003_x.py" in msg and "0001_x.py" not in msg
    assert set(err.value.revisions) == {"0002", "0003"}


def test_self_cycle():
    with pytest.raises(RevisionCycle) as err:
        build_chain([mk("0001", "0001")])
    assert "0001_x.py" in str(err.value)


def test_two_bases_are_two_heads():
    with pytest.raises(MultipleHeads) as err:
        build_chain([mk("0001", None), mk("0002", None)])
    assert "0001_x.py" in str(err.value) and "0002_x.py" in str(err.value)


def test_branch_is_multiple_heads():
    scripts = [mk("0001", None), mk("0002", "0001"), mk("0003", "0001"), mk("0004", "0003")]
    with pytest.raises(MultipleHeads) as err:
        build_chain(scripts)
    assert err.value.heads == ["0002", "0004"]
    assert "0002_x.py" in str(err.value) and "0004_x.py" in str(err.value)


# ---- Chain -------------------------------------------------------------------------


def test_get_and_unknown_revision():
    chain = build_chain(linear(3))
    assert chain.get("0002").revision == "0002"
    assert "0002" in chain and "0009" not in chain
    with pytest.raises(UnknownRevision):
        chain.get("0009")


def test_pending():
    chain = build_chain(linear(5))
    revs = lambda scripts: [s.revision for s in scripts]  # noqa: E731
    assert revs(chain.pending(set())) == ["0001", "0002", "0003", "0004", "0005"]
    assert revs(chain.pending({"0001", "0002"})) == ["0003", "0004", "0005"]
    assert revs(chain.pending({"0001", "0002"}, to="0004")) == ["0003", "0004"]
    assert revs(chain.pending(["0001", "0003"], to="0003")) == ["0002"]  # gap is pending
    assert revs(chain.pending({"0001", "0002"}, to="0002")) == []
    assert revs(chain.pending({"0001", "0002", "0003", "0004", "0005"})) == []
    assert revs(chain.pending({"0001", "0099"})) == ["0002", "0003", "0004", "0005"]
    with pytest.raises(UnknownRevision):
        chain.pending(set(), to="0099")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_any_permutation_gives_same_order(data):
    revs = data.draw(
        st.lists(st.from_regex(r"\A[0-9]{4}\Z"), min_size=1, max_size=25, unique=True),
        label="chain order",
    )
    scripts = [mk(r, revs[i - 1] if i else None) for i, r in enumerate(revs)]
    permuted = data.draw(st.permutations(scripts), label="input order")
    chain = build_chain(permuted)
    assert chain.revisions() == revs
    assert chain.head == revs[-1]


# ---- loading from disk -------------------------------------------------------------


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


GOOD_1 = '''\
"""Create the settings document.

Longer explanation.
"""
revision = "0001"
down_revision = None


def plan(ctx):
    yield "one"
'''

GOOD_2 = '''\
"""Second step."""
revision = "0002"
down_revision = "0001"


def plan(ctx):
    yield "two"
'''


def test_load_good_chain(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    write(tmp_path, "0002_second.py", GOOD_2)
    p1 = write(tmp_path, "0001_create_settings.py", GOOD_1)
    chain = load_chain(tmp_path)
    assert chain.revisions() == ["0001", "0002"]
    s = chain.get("0001")
    assert s.path == p1 and s.down_revision is None
    assert s.description == "Create the settings document."
    assert s.slug == "0001_create_settings"
    assert s.checksum == checksum_source(p1.read_bytes())
    assert list(s.plan(None)) == ["one"]
    assert chain.get("0002").down_revision == "0001"
    assert not (tmp_path / "__pycache__").exists()
    assert not [m for m in sys.modules if m.startswith("fsmigrate_migrations_")]


def test_non_migration_files_are_ignored(tmp_path):
    write(tmp_path, "0001_create.py", GOOD_1)
    write(tmp_path, "__init__.py", "raise RuntimeError('not a migration')\n")
    write(tmp_path, "_helpers.py", "raise RuntimeError('not a migration')\n")
    write(tmp_path, ".0002_hidden.py", "raise RuntimeError('not a migration')\n")
    write(tmp_path, "0002_notes.txt", "not python")
    write(tmp_path, "0002_backup.py.orig", "not python")
    write(tmp_path, "0002_compiled.pyc", "not python")
    write(tmp_path, "README.md", "notes")
    (tmp_path / "0003_dir.py").mkdir()
    (tmp_path / "sub").mkdir()  # subdirectories are not looked into, whatever they hold
    write(tmp_path / "sub", "0002_nested.py", "raise RuntimeError('not a migration')\n")
    write(tmp_path / "sub", "abc.py", "raise RuntimeError('not a migration')\n")
    assert load_chain(tmp_path).revisions() == ["0001"]


# A good migration 0002 under names that are not `NNNN_slug.py`: each would never run
# and nothing would say so. (issue 10, part 4)
MISNAMED = [
    "0002-bad-name.py",
    "2_x.py",
    "02_x.py",
    "00002_x.py",
    "abc.py",
    "readme.py",
    "0002_.py",
    "0002.py",
    "0002_x.PY",
    "0002_x.Py",
    "0002-x_y.py",
    "0002 x.py",
    "x0002_x.py",
    "\u0660\u0660\u0660\u0662_x.py",
    "0002_ .py",
    "0002_a\tb.py",
    "0002_a\nb.py",
]


@pytest.mark.parametrize("name", MISNAMED)
def test_misnamed_python_file_is_refused_with_one_line(tmp_path, name):
    write(tmp_path, "0001_create.py", GOOD_1)
    path = write(tmp_path, name, GOOD_2)
    with pytest.raises(ScriptInvalid) as err:
        load_chain(tmp_path)
    assert isinstance(err.value, ScriptMisnamed)
    assert err.value.path == path and err.value.paths == [path]
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(str(tmp_path)) and "NNNN_slug.py" in message
    assert repr(name)[1:-1] in message  # control characters escaped, the rest as is
    assert err.value.exit_code == 1


def test_every_misnamed_file_is_named_in_one_line_before_anything_is_imported(tmp_path):
    write(tmp_path, "0001_create.py", "raise RuntimeError('must not be imported')\n")
    paths = [write(tmp_path, name, GOOD_2) for name in ("abc.py", "0002-bad-name.py")]
    with pytest.raises(ScriptMisnamed) as err:
        load_chain(tmp_path)
    assert err.value.paths == sorted(paths)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "are not migration script names" in message
    assert all(str(p) in message for p in paths)


@pytest.mark.parametrize(
    "name",
    [
        "0002_second.py",
        "0002__second.py",
        "0002_Second-Step.py",
        "0002_v1.2.py",
        "0002_caf\u00e9.py",
        "0002_x.py.py",
    ],
)
def test_well_named_scripts_load(tmp_path, name):
    write(tmp_path, "0001_create.py", GOOD_1)
    path = write(tmp_path, name, GOOD_2)
    assert load_chain(tmp_path).get("0002").path == path


def test_script_name_that_is_not_a_regular_file_is_refused(tmp_path):
    write(tmp_path, "0001_create.py", GOOD_1)
    (tmp_path / "0002_gone.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(ScriptInvalid) as err:
        load_chain(tmp_path)
    assert err.value.path == tmp_path / "0002_gone.py" and "regular file" in str(err.value)


NAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
FILE_NAMES = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=12).map(lambda s: s + ".py"),
    st.text(NAME_CHARS, min_size=1, max_size=16),
    st.from_regex(
        r"\A[_.]?[0-9\u0660-\u0669]{0,6}[-_ .]?[A-Za-z0-9_. -]{0,6}"
        r"\.(py|PY|Py|pY|pyc|txt|md|py\.orig)\Z"
    ),
).filter(lambda n: n not in (".", "..") and len(n.encode("utf-8")) < 200)


@settings(max_examples=300, deadline=None)
@given(FILE_NAMES)
def test_property_a_file_is_loaded_or_refused_never_silently_ignored(name):
    """Any file name: a Python file (not `_helper`, not hidden) is a migration or an error."""
    python = name.lower().endswith(".py") and not name.startswith(("_", "."))
    revision = name[:4] if re.match(r"[0-9]{4}_", name) else "0001"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(
            f'"""Any."""\nrevision = "{revision}"\ndown_revision = None\n'
            "def plan(ctx):\n    yield from ()\n",
            encoding="utf-8",
        )
        try:
            chain = load_chain(Path(folder))
        except ScriptMisnamed as err:
            assert python, f"{name!r} is not a Python file but was refused"
            assert err.path == path
            assert len(str(err).splitlines()) == 1
        else:
            if python:
                assert [s.path for s in chain] == [path], f"{name!r} was silently ignored"
                assert chain.get(revision).revision == revision
            else:
                assert len(chain) == 0


def test_script_can_import_helper_from_its_directory(tmp_path):
    write(tmp_path, "_helpers.py", "VALUE = 'helped'\n")
    write(
        tmp_path,
        "0001_x.py",
        '''\
        """Uses a helper."""
        from _helpers import VALUE
        revision = "0001"
        down_revision = None
        def plan(ctx):
            yield VALUE
        ''',
    )
    path_before = list(sys.path)
    assert list(load_chain(tmp_path).get("0001").plan(None)) == ["helped"]
    assert sys.path == path_before and "_helpers" not in sys.modules


def test_missing_directory(tmp_path):
    with pytest.raises(UsageError) as err:
        load_chain(tmp_path / "nope")
    assert "does not exist" in str(err.value) and "fsmigrate new" in str(err.value)


def test_syntax_error(tmp_path):
    write(tmp_path, "0001_create.py", GOOD_1)
    bad = write(tmp_path, "0002_broken.py", '"""Broken."""\nrevision = "0002"\ndef plan(ctx:\n')
    with pytest.raises(ScriptImportError) as err:
        load_chain(tmp_path)
    assert str(bad) in str(err.value) and "SyntaxError" in str(err.value)
    assert err.value.path == bad


def test_raising_at_import(tmp_path):
    bad = write(tmp_path, "0001_boom.py", '"""Boom."""\nraise ValueError("kaboom")\n')
    with pytest.raises(ScriptImportError) as err:
        load_chain(tmp_path)
    assert str(bad) in str(err.value) and "ValueError: kaboom" in str(err.value)


def test_import_error_and_sys_exit(tmp_path):
    write(tmp_path, "0001_imp.py", '"""Imp."""\nimport no_such_module_fsmigrate\n')
    with pytest.raises(ScriptImportError, match="ModuleNotFoundError"):
        load_chain(tmp_path)
    write(tmp_path, "0001_imp.py", '"""Imp."""\nimport sys\nsys.exit(3)\n')
    with pytest.raises(ScriptImportError, match="SystemExit"):
        load_chain(tmp_path)


@pytest.mark.parametrize(
    "source, problem",
    [
        (GOOD_1.replace('def plan(ctx):\n    yield "one"\n', ""), "plan"),
        (GOOD_1.replace("def plan(ctx):", "plan = 3\ndef other(ctx):"), "plan"),
        (GOOD_1.split('"""\n', 1)[1], "docstring"),
        ('""""""\n' + GOOD_1.split('"""\n', 1)[1], "docstring"),
        (GOOD_1.replace('revision = "0001"\n', ""), "revision"),
        (GOOD_1.replace('revision = "0001"', "revision = 1"), "revision"),
        (GOOD_1.replace("down_revision = None\n", ""), "down_revision"),
        (GOOD_1.replace("down_revision = None", "down_revision = 0"), "down_revision"),
        (GOOD_1.replace('revision = "0001"', 'revision = "0007"'), "0007"),
    ],
)
def test_invalid_scripts(tmp_path, source, problem):
    path = write(tmp_path, "0001_create.py", source)
    with pytest.raises(ScriptInvalid) as err:
        load_chain(tmp_path)
    assert err.value.path == path
    assert str(path) in str(err.value) and problem in str(err.value)


def test_wrong_filename_prefix(tmp_path):
    path = write(tmp_path, "0002_create.py", GOOD_1)
    with pytest.raises(ScriptInvalid) as err:
        load_chain(tmp_path)
    assert "0002_create.py" in str(err.value) and "'0001'" in str(err.value)
    assert err.value.path == path


def test_chain_errors_from_disk_name_files(tmp_path):
    write(tmp_path, "0001_a.py", GOOD_1)
    write(tmp_path, "0002_b.py", GOOD_2)
    write(tmp_path, "0003_c.py", GOOD_2.replace('"0002"', '"0003"'))
    with pytest.raises(MultipleHeads) as err:
        load_chain(tmp_path)
    assert "0002_b.py" in str(err.value) and "0003_c.py" in str(err.value)


def test_reload_sees_edits(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as on a machine that caches .pyc
    path = write(tmp_path, "0001_create.py", GOOD_1)
    first = load_chain(tmp_path).get("0001")
    assert list(first.plan(None)) == ["one"]
    # Same size, same second: a stale bytecode cache would not notice this edit.
    path.write_text(GOOD_1.replace('"one"', '"uno"'), encoding="utf-8")
    second = load_chain(tmp_path).get("0001")
    assert list(second.plan(None)) == ["uno"]
    assert second.checksum != first.checksum
    assert second.checksum == checksum_source(path.read_bytes())
    assert list(first.plan(None)) == ["one"]  # the earlier load is untouched


def test_crlf_checkout_has_same_checksum(tmp_path):
    lf = write(tmp_path, "0001_create.py", GOOD_1)
    checksum_lf = load_chain(tmp_path).get("0001").checksum
    lf.write_bytes(GOOD_1.replace("\n", "\r\n").encode())
    assert load_chain(tmp_path).get("0001").checksum == checksum_lf


def test_checksum_source():
    lf = "a = 1\nb = 2\n"
    assert checksum_source(lf) == checksum_source(lf.replace("\n", "\r\n"))
    assert checksum_source(lf) == checksum_source(lf.replace("\n", "\r"))
    assert checksum_source(lf) == checksum_source(lf.encode())
    assert checksum_source(lf) != checksum_source("a = 1\nb = 3\n")
    assert checksum_source(lf) != checksum_source("a = 1\n\nb = 2\n")
    assert len(checksum_source(lf)) == 64


# ---- new_script and slugify --------------------------------------------------------


def test_new_script_first_and_second(tmp_path):
    directory = tmp_path / "migrations"
    first = new_script(directory, "Delete legacy heartbeat docs")
    assert first == directory / "0001_delete_legacy_heartbeat_docs.py"
    second = new_script(directory, "Normalise IDs")
    assert second.name == "0002_normalise_ids.py"
    chain = load_chain(directory)
    assert chain.revisions() == ["0001", "0002"]
    assert chain.get("0001").down_revision is None
    assert chain.get("0002").down_revision == "0001"
    assert chain.get("0001").description == "Delete legacy heartbeat docs"
    assert list(chain.get("0002").plan(object())) == []
    text = first.read_text()
    for example in (
        'ctx.scan("collection")',
        "yield ctx.delete(doc)",
        'ctx.update(doc, {"field": value})',
        'ctx.set("col/id"',
        'ctx.create("col/id"',
        'ctx.get("col/id")',
        'ctx.note("text")',
    ):
        assert example in text


def test_new_script_with_awkward_message(tmp_path):
    path = new_script(tmp_path, 'Fix "quotes" """ and \\ backslash\nsecond line {x}')
    script = load_chain(tmp_path).get("0001")
    assert script.path == path
    assert script.description == 'Fix "quotes" """ and \\ backslash'
    assert "second line {x}" in script.doc


def test_new_script_numbers_after_max(tmp_path):
    write(tmp_path, "0001_create.py", GOOD_1)
    write(tmp_path, "0002_second.py", GOOD_2)
    path = new_script(tmp_path, "third")
    assert path.name == "0003_third.py"
    assert load_chain(tmp_path).head == "0003"


def test_new_script_refuses_broken_chain(tmp_path):
    write(tmp_path, "0001_create.py", GOOD_1)
    write(tmp_path, "0002_broken.py", "def oops(:\n")
    with pytest.raises(ScriptImportError):
        new_script(tmp_path, "more")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001_create.py", "0002_broken.py"]


def test_new_script_refuses_empty_message(tmp_path):
    with pytest.raises(UsageError):
        new_script(tmp_path / "m", "!!!")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "message, slug",
    [
        ("Delete legacy heartbeats", "delete_legacy_heartbeats"),
        ("  --Fix: p2_nba_raw.Tables!!  ", "fix_p2_nba_raw_tables"),
        ("Café résumé", "cafe_resume"),
        ("a" * 60, "a" * 50),
        ("a" * 49 + " b", "a" * 49),  # truncation does not leave a trailing _
        ("0042", "0042"),
    ],
)
def test_slugify(message, slug):
    assert slugify(message) == slug


@pytest.mark.parametrize("message", ["", "   ", "!!!", "___", "日本"])
def test_slugify_refuses_empty(message):
    with pytest.raises(UsageError):
        slugify(message)


def test_chain_is_plain_to_build():
    assert Chain().head is None and Chain(linear(2)).head == "0002"
