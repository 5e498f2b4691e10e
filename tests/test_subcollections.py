"""ctx.delete and what is under a document (issue 22): Firestore does not cascade a delete,
so ctx.delete(doc, subcollections=...) refuses (default), deletes the subtree, or keeps
it knowingly; a subtree delete is guarded, archived and audited like its parent, and
`restore` brings it all back; the same on the Beam runner. Missing documents (they do
not exist, but have subcollections) are found with ctx.scan(missing=True) and cleaned up
by delete, rename and normalize."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fsmigrate import api
from fsmigrate.errors import MigrationFailed
from helpers import Fsm, ops_of, write_script

# users/u1 has two levels under it; users/u2 nothing; users/ghost does not exist
TREE = {
    "users/u1": {"name": "one"},
    "users/u1/orders/o1": {"total": 10},
    "users/u1/orders/o1/lines/l1": {"sku": "a"},
    "users/u1/orders/o1/lines/l2": {"sku": "b"},
    "users/u1/prefs/p1": {"dark": True},
    "users/u2": {"name": "two"},
}
SUBTREE = [p for p in TREE if p.startswith("users/u1/")]
GHOST = {
    "users/ghost/orders/o9": {"total": 9},
    "users/ghost/orders/o9/lines/l9": {"sku": "z"},
}

LOCAL = """
def plan(ctx):
    for doc in ctx.scan("users"):
        yield ctx.delete(doc, subcollections={mode!r})
"""

BEAM = """
from fsmigrate.distributed import scan

source = scan("users")

def each(ctx, doc):
    yield ctx.delete(doc, subcollections={mode!r})
"""


def seed(client: Any, docs: dict[str, dict]) -> None:
    for path, data in docs.items():
        client.document(path).set(data)


def existing(client: Any) -> dict[str, dict]:
    """Every document under `users`, at any depth (the missing ones are not documents)."""
    found: dict[str, dict] = {}

    def walk(collection: Any) -> None:
        for ref in collection.list_documents():
            snap = ref.get()
            if snap.exists:
                found[ref.path] = snap.to_dict()
            for sub in ref.collections():
                walk(sub)

    walk(client.collection("users"))
    return found


def audit_ops(cfg: api.Config, run_id: str) -> list[dict]:
    audit = api.audit(cfg, run_id)
    return [json.loads(line) for line in "".join(audit.chunks("jsonl")).splitlines()]


def config(tmp_path: Path, project_id: str) -> api.Config:
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


EXPECTED_REMAINING = {
    "refuse": {p: TREE[p] for p in ["users/u1", *SUBTREE]},  # u1 left whole, with a note
    "delete": {},
    "keep": {p: TREE[p] for p in SUBTREE},  # u1 gone, knowingly, its subtree kept
}
EXPECTED_DELETED = {
    "refuse": ["users/u2"],
    "delete": sorted(TREE),
    "keep": ["users/u1", "users/u2"],
}


@pytest.mark.parametrize("runner", ["local", "beam"])
@pytest.mark.parametrize("mode", ["refuse", "delete", "keep"])
def test_a_document_with_two_levels_of_subcollections_under_each_choice(
    tmp_path: Path, project_id: str, emulator, fs_client, mode: str, runner: str
) -> None:
    seed(fs_client, TREE)
    cfg = config(tmp_path, project_id)
    write_script(
        cfg.migrations, "0001", None, (LOCAL if runner == "local" else BEAM).format(mode=mode)
    )
    options = api.RunOptions(runner=runner, workers=2)

    dry = api.upgrade(cfg, options, dry_run=True).runs[0]
    applied = api.upgrade(cfg, options).runs[0]

    # the dry-run counts the subtree like the parent, and so does the estimate
    assert dry.counts["delete"] == len(EXPECTED_DELETED[mode])
    assert dry.estimate is not None and dry.estimate["deletes"] == len(EXPECTED_DELETED[mode])
    assert applied.status == "succeeded" and applied.committed == len(EXPECTED_DELETED[mode])
    assert existing(fs_client) == EXPECTED_REMAINING[mode]
    ops = audit_ops(cfg, applied.run_id)
    # every deleted document archived (its before-image), guarded by its update time
    assert sorted(op["path"] for op in ops) == EXPECTED_DELETED[mode]
    assert all(op["before"] is not None and op["status"] == "committed" for op in ops)
    assert all("update_time" in (op["precondition"] or {}) for op in ops)
    if mode == "refuse":
        assert any(
            n.startswith("REFUSED delete users/u1") and "orders, prefs" in n for n in applied.notes
        )
    if mode == "delete":
        assert any(
            n.startswith("DELETE users/u1 (with its subtree): 4 documents under orders, prefs")
            for n in dry.notes
        )

    restored = api.restore(cfg, applied.run_id).runs[0]

    assert restored.committed == len(EXPECTED_DELETED[mode])
    assert existing(fs_client) == TREE  # all of it back, every level


@pytest.mark.parametrize("batch_size", ["500", "3"])
def test_a_subtree_delete_is_guarded_per_document(
    tmp_path: Path, project_id: str, emulator, fs_client, batch_size: str
) -> None:
    """A document of the subtree written after the plan is never deleted. A subtree that
    fits in one commit is one atomic group: then none of it goes (nothing half-deleted);
    a bigger one (here: batches of 3) goes in stages, and only the changed one stays."""
    seed(fs_client, TREE)
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, LOCAL.format(mode="delete"))
    plan = tmp_path / "plan.jsonl"
    dry = fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--batch-size", batch_size)
    assert dry.exit_code == 0, dry.output
    fs_client.document("users/u1/orders/o1/lines/l2").set({"sku": "changed"})

    out = fsm.json("apply", str(plan), "--batch-size", batch_size)["migrations"][0]

    changed = {"users/u1/orders/o1/lines/l2": {"sku": "changed"}}
    if batch_size == "500":
        assert (out["committed"], out["skipped"]) == (1, len(TREE) - 1)
        assert existing(fs_client) == {**{p: TREE[p] for p in ["users/u1", *SUBTREE]}, **changed}
    else:
        assert "deleted in stages" in dry.stdout
        assert (out["committed"], out["skipped"]) == (len(TREE) - 1, 1)
        assert existing(fs_client) == changed


def test_a_delete_without_a_choice_is_refused_by_default_and_an_unknown_choice_raises(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed(fs_client, TREE)
    cfg = config(tmp_path, project_id)
    write_script(
        cfg.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("users"):
        yield ctx.delete(doc)
""",
    )
    run = api.upgrade(cfg).runs[0]
    assert run.committed == 1 and "users/u1" in existing(fs_client)
    write_script(
        cfg.migrations,
        "0002",
        "0001",
        """
def plan(ctx):
    for doc in ctx.scan("users"):
        yield ctx.delete(doc, subcollections="cascade")
""",
    )
    with pytest.raises(MigrationFailed, match="'refuse', 'delete' or 'keep'"):
        api.upgrade(cfg)


MISSING = """
def plan(ctx):
    found = list(ctx.scan("users", missing=True))
    ctx.note("missing: " + ", ".join(m.path + " " + str(list(m.subcollections)) for m in found))
    for doc in found:
        yield ACTION
"""


def test_missing_documents_with_subcollections_are_found_and_deleted(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed(fs_client, {**TREE, **GHOST})
    cfg = config(tmp_path, project_id)
    write_script(
        cfg.migrations,
        "0001",
        None,
        MISSING.replace("ACTION", 'ctx.delete(doc, subcollections="delete")'),
    )

    run = api.upgrade(cfg).runs[0]

    assert "missing: users/ghost ['orders']" in run.notes
    assert run.committed == 2  # what is under the ghost; the ghost has nothing of its own
    assert existing(fs_client) == TREE
    assert fs_client.collection("users/ghost/orders").get() == []
    assert sorted(op["path"] for op in audit_ops(cfg, run.run_id)) == sorted(GHOST)
    restored = api.restore(cfg, run.run_id).runs[0]
    assert restored.committed == 2 and existing(fs_client) == {**TREE, **GHOST}


def test_missing_documents_subtrees_are_moved_by_rename_and_normalize(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed(fs_client, {**TREE, **GHOST, "users/Spook/orders/o7": {"total": 7}})
    cfg = config(tmp_path, project_id)
    write_script(
        cfg.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("users", missing=True):
        if doc.id == "ghost":
            yield ctx.rename(doc, "ghost2", subcollections="move")
""",
    )
    write_script(
        cfg.migrations,
        "0002",
        "0001",
        """
def plan(ctx):
    yield from ctx.normalize(
        "users", lambda i: i.lower(), subcollections="move", missing=True
    )
""",
    )

    runs = api.upgrade(cfg).runs

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert existing(fs_client) == {
        **TREE,
        "users/ghost2/orders/o9": {"total": 9},
        "users/ghost2/orders/o9/lines/l9": {"sku": "z"},
        "users/spook/orders/o7": {"total": 7},
    }


def test_a_subtree_delete_killed_mid_run_resumes_and_finishes(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    """SIGKILL after the third commit; the next upgrade settles it and deletes the rest,
    each document once, each archived."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    tree = {}
    for u in range(10):
        tree[f"users/u{u}"] = {"u": u}
        tree[f"users/u{u}/orders/o1"] = {"u": u}
        tree[f"users/u{u}/orders/o1/lines/l1"] = {"u": u}
        tree[f"users/u{u}/orders/o1/lines/l2"] = {"u": u}
    seed(fs_client, tree)
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, LOCAL.format(mode="delete"))

    def run(**env: str) -> subprocess.CompletedProcess:
        args = ["--project", project_id, "--state", str(fsm.state)]
        args += ["--migrations", str(fsm.migrations), "upgrade", "--quiet", "--batch-size", "4"]
        return subprocess.run(
            [sys.executable, "-m", "fsmigrate", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    killed = run(FSMIGRATE_TEST_CRASH="after-commit:3")
    assert killed.returncode == -signal.SIGKILL
    assert len(existing(fs_client)) == len(tree) - 12  # three atomic subtrees went

    resumed = run()

    assert resumed.returncode == 0, resumed.stderr
    assert existing(fs_client) == {}
    db = sqlite3.connect(fsm.state)
    per_path = db.execute(
        "SELECT path, COUNT(*) FROM ops WHERE status='committed' GROUP BY path"
    ).fetchall()
    assert sorted(p for p, _ in per_path) == sorted(tree) and {n for _, n in per_path} == {1}
    db.close()
    committed = ops_of(fsm.state, status="committed")
    assert len(committed) == len(tree) and all(op["before"] for op in committed)
