"""Built-in tests for a team's migrations. Import them into a test module:

    from fsmigrate.testing.checks import (test_dry_run_matches_apply, test_plan_never_writes,
                                          test_repeatable_is_idempotent, test_single_head)

They use the plugin's fixtures: `fsmigrate_migrations` (which directory), `fsmigrate_seed`
(the data, seeded before the first migration) and `fsmigrate` (the harness). Each runs
the whole chain, migration by migration, on a fresh project of the emulator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from fsmigrate.errors import FsMigrateError
from fsmigrate.scripts import loader as scripts
from fsmigrate.testing.guard import ClientWriteError
from fsmigrate.testing.harness import Harness, describe_ops

__all__ = [
    "test_single_head",
    "test_dry_run_matches_apply",
    "test_plan_never_writes",
    "test_repeatable_is_idempotent",
]

T = TypeVar("T")
SAMPLE = 10


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def _step(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one harness step; its error fails the test in one paragraph (no chain)."""
    try:
        return call(*args, **kwargs)
    except ClientWriteError as exc:
        message = f"{what}: {exc}"
    except FsMigrateError as exc:
        message = f"{what} failed: {exc}"
    _fail(message)


def _chain(fsmigrate: Harness) -> list[scripts.Script]:
    chain = _step(f"loading {fsmigrate.migrations}", fsmigrate.chain)
    if not len(chain):
        _fail(
            f"no migration scripts in {fsmigrate.migrations} (ini option "
            "fsmigrate_migrations, or the fsmigrate_migrations fixture)"
        )
    return list(chain)


def _run_of(result: Any, revision: str) -> Any:
    return next(r for r in result.runs if r.revision == revision)


def _name(script: scripts.Script) -> str:
    return f"migration {script.revision} ({script.path.name})"


def test_single_head(fsmigrate_migrations: Path) -> None:
    """The migrations load (no misnamed, broken or duplicate scripts) and form one chain
    with a single head."""
    chain = _step(f"loading {fsmigrate_migrations}", scripts.load_chain, fsmigrate_migrations)
    if not len(chain):
        _fail(
            f"no migration scripts in {fsmigrate_migrations} (ini option "
            "fsmigrate_migrations, or the fsmigrate_migrations fixture)"
        )


def test_dry_run_matches_apply(fsmigrate: Harness, fsmigrate_seed: Any) -> None:
    """On the seeded data, each migration's dry-run plans exactly the operations (kind and
    document) its apply then commits."""
    fsmigrate.seed_all(fsmigrate_seed)
    problems = []
    for script in _chain(fsmigrate):
        rev = script.revision
        dry = _step(f"the dry-run of {_name(script)}", fsmigrate.upgrade, dry_run=True, to=rev)
        applied = _step(f"the apply of {_name(script)}", fsmigrate.upgrade, to=rev)
        planned = Counter((o.kind, o.path) for o in fsmigrate.operations(_run_of(dry, rev).run_id))
        done = fsmigrate.operations(_run_of(applied, rev).run_id)
        committed = Counter((o.kind, o.path) for o in done if o.status == "committed")
        if planned != committed:
            problems.append(_mismatch(script, planned, committed, done))
    if problems:
        _fail(
            "\n".join(problems) + "\nA plan must not depend on ctx.dry_run, randomness or "
            "the clock: an apply must do what its dry-run (the reviewed plan) showed."
        )


def _mismatch(script: scripts.Script, planned: Counter, committed: Counter, done: list[Any]) -> str:
    lines = [
        f"{_name(script)}: the dry-run planned {sum(planned.values())} operations, "
        f"the apply committed {sum(committed.values())}"
    ]
    only_dry = list((planned - committed).elements())
    only_apply = list((committed - planned).elements())
    others = [(o.kind, o.path, f"({o.status})") for o in done if o.status != "committed"]
    if only_dry:
        lines.append(f"  only in the dry-run: {describe_ops(only_dry, SAMPLE)}")
    if only_apply:
        lines.append(f"  only in the apply: {describe_ops(only_apply, SAMPLE)}")
    if others:
        lines.append(f"  not committed by the apply: {describe_ops(others, SAMPLE)}")
    return "\n".join(lines)


def test_plan_never_writes(fsmigrate: Harness, fsmigrate_seed: Any) -> None:
    """Planning each migration (a dry-run, on the data the earlier ones left) writes
    nothing to Firestore: every document's update time is the same before and after, and
    a write through the Firestore client from a migration fails with its file and line."""
    fsmigrate.seed_all(fsmigrate_seed)
    for script in _chain(fsmigrate):
        rev = script.revision
        before = fsmigrate.snapshot()
        _step(f"the dry-run of {_name(script)}", fsmigrate.upgrade, dry_run=True, to=rev)
        after = fsmigrate.snapshot()
        if before != after:
            created = sorted(set(after) - set(before))
            deleted = sorted(set(before) - set(after))
            changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
            parts = [
                f"{what} {describe_ops([(p,) for p in paths], SAMPLE)}"
                for what, paths in (
                    ("created", created),
                    ("changed", changed),
                    ("deleted", deleted),
                )
                if paths
            ]
            _fail(
                f"the dry-run of {_name(script)} wrote to Firestore: {'; '.join(parts)}. "
                "plan(ctx) must only read and yield operations."
            )
        _step(f"the apply of {_name(script)}", fsmigrate.upgrade, to=rev)


def test_repeatable_is_idempotent(fsmigrate: Harness, fsmigrate_seed: Any) -> None:
    """Each `repeatable = True` migration, run again right after it was applied (on the
    seeded data), plans no operations."""
    chain = _chain(fsmigrate)
    repeatable = [s for s in chain if s.repeatable]
    if not repeatable:
        pytest.skip(f"no migration in {fsmigrate.migrations} is repeatable")
    fsmigrate.seed_all(fsmigrate_seed)
    problems = []
    for script in repeatable:
        rev = script.revision
        _step(f"the apply of {_name(script)}", fsmigrate.upgrade, to=rev)
        again = _step(f"running {_name(script)} again", fsmigrate.rerun, rev, dry_run=True)
        ops = [(o.kind, o.path) for o in fsmigrate.operations(_run_of(again, rev).run_id)]
        if ops:
            problems.append(
                f"{_name(script)} is repeatable, but run again right after it "
                f"was applied it plans {len(ops)} operations: "
                f"{describe_ops(ops, SAMPLE)}"
            )
    if problems:
        _fail(
            "\n".join(problems) + "\nA repeatable migration must find nothing left to do "
            "once it has run (make it idempotent, or remove `repeatable = True`)."
        )
