"""Commits bounded by bytes as well as by count (regression: 40 documents of 600 KB went
out as one 24 MB commit, the server refused it, and the refusal was retried as transient)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_crash_resume import run_cli

from fsmigrate.engine.batching import DEFAULT_BATCH_BYTES, batches
from fsmigrate.scripts.context import Barrier
from fsmigrate.scripts.operations import DELETE, Group, Operation
from helpers import Fsm, ops_of, seed_docs, write_script

BLOB = 600_000
REWRITE = """
def plan(ctx):
    for doc in ctx.scan("big"):
        yield ctx.update(doc, {"blob": "y" * 600_000, "n": doc.get("n") + 1000})
"""


def seed(client, n: int) -> None:
    seed_docs(client, {f"big/d{i:03d}": {"n": i, "blob": "x" * 1000} for i in range(n)})


def state_of(client) -> dict[str, tuple[int, int]]:
    return {s.id: (s.get("n"), len(s.get("blob"))) for s in client.collection("big").stream()}


def batch_bytes(state: Path, run_id: str) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for op in ops_of(state, run_id):
        sizes[op["batch"]] = sizes.get(op["batch"], 0) + len(op["write"])
    return sizes


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    write_script(fsm.migrations, "0001", None, REWRITE)
    return fsm


def test_forty_large_rewrites_go_out_in_commits_under_the_byte_bound(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 40)

    run = fsm.json("upgrade", "--quiet")["migrations"][0]

    assert (run["status"], run["committed"], run["retries"]) == ("succeeded", 40, 0)
    assert state_of(fs_client) == {f"d{i:03d}": (i + 1000, BLOB) for i in range(40)}
    sizes = batch_bytes(fsm.state, run["run_id"])
    assert len(sizes) >= 40 * BLOB // DEFAULT_BATCH_BYTES + 1
    assert max(sizes.values()) <= DEFAULT_BATCH_BYTES


def test_a_commit_the_server_refuses_as_too_large_is_split_not_retried(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 40)

    # 9 MB commits are fine for production but over the emulator's 4 MiB gRPC limit
    run = fsm.json("upgrade", "--quiet", "--batch-bytes", "9000000")["migrations"][0]

    assert (run["status"], run["committed"], run["retries"]) == ("succeeded", 40, 0)
    assert state_of(fs_client) == {f"d{i:03d}": (i + 1000, BLOB) for i in range(40)}
    assert max(batch_bytes(fsm.state, run["run_id"]).values()) > 4_194_304
    assert any("refused by Firestore as too large were split" in n for n in run["notes"])


def test_a_write_that_cannot_fit_is_one_line_naming_the_document(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3)

    for args in (("--dry-run",), ()):  # the dry-run finds it too, before review
        out = fsm("upgrade", "--batch-bytes", "100000", *args)
        assert out.exit_code == 1, out.output
        assert out.stderr.count("\n") == 1 and "big/d000" in out.stderr
        assert "--batch-bytes" in out.stderr
    assert state_of(fs_client) == {f"d{i:03d}": (i, 1000) for i in range(3)}
    again = fsm("upgrade", "--quiet")  # not a migration failure: a larger bound goes on
    assert again.exit_code == 0, again.output
    assert state_of(fs_client) == {f"d{i:03d}": (i + 1000, BLOB) for i in range(3)}


def test_atomic_groups_are_never_split_by_the_byte_bound(
    tmp_path, project_id, fs_client, emulator
) -> None:
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(
        fsm.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("big"):
        yield ctx.rename(doc, doc.id.upper(), subcollections="unchecked")
""",
    )
    for i in range(12):
        fs_client.document(f"big/d{i:03d}").set({"n": i, "blob": "x" * BLOB})

    run = fsm.json("upgrade", "--quiet", "--batch-bytes", "1500000")["migrations"][0]

    assert (run["committed"], run["skipped"]) == (24, 0)
    groups: dict[int, set[tuple[int, str]]] = {}
    for op in ops_of(fsm.state, run["run_id"]):
        groups.setdefault(op["grp"], set()).add((op["batch"], op["commit_time"]))
    assert len(groups) == 12 and all(len(seen) == 1 for seen in groups.values())
    assert max(batch_bytes(fsm.state, run["run_id"]).values()) <= 1_500_000
    assert sorted(s.id for s in fs_client.collection("big").stream()) == [
        f"D{i:03d}" for i in range(12)
    ]


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_resume_settles_a_journaled_batch_under_a_different_split(
    fsm: Fsm, fs_client, point: str
) -> None:
    seed(fs_client, 30)

    killed = run_cli(
        fsm, "upgrade", "--quiet", "--batch-bytes", "2000000", FSMIGRATE_TEST_CRASH=f"{point}:3"
    )
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(fsm, "upgrade", "--quiet", "--batch-bytes", "1300000")

    assert resumed.returncode == 0, resumed.stderr
    # non-idempotent (n + 1000): each document was rewritten exactly once
    assert state_of(fs_client) == {f"d{i:03d}": (i + 1000, BLOB) for i in range(30)}
    db = sqlite3.connect(fsm.state)
    runs = db.execute("SELECT id, status FROM runs ORDER BY started_at").fetchall()
    assert [status for _, status in runs] == ["interrupted", "succeeded"]
    committed = db.execute(
        "SELECT path, COUNT(*) FROM ops WHERE status='committed' GROUP BY path"
    ).fetchall()
    assert len(committed) == 30 and all(n == 1 for _, n in committed)
    assert max(batch_bytes(fsm.state, runs[1][0]).values()) <= 1_300_000


# ---- the batching itself (pure) ------------------------------------------------------------

units = st.lists(
    st.one_of(
        st.integers(1, 300).map(lambda size: ("op", size)),
        st.lists(st.integers(1, 300), min_size=1, max_size=4).map(lambda sizes: ("group", sizes)),
        st.just(("barrier", 0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(units, st.integers(1, 8), st.integers(300, 2000))
def test_batches_respect_count_and_bytes_and_keep_groups_and_order(items, size, max_bytes) -> None:
    stream, weight, groups = [], {}, []
    for n, (what, spec) in enumerate(items):
        if what == "barrier":
            stream.append(Barrier())
            continue
        sizes = [spec] if what == "op" else spec
        ops = [Operation(DELETE, f"c/d{n}-{i}") for i in range(len(sizes))]
        for op, w in zip(ops, sizes):
            weight[op.path] = w
        if what == "group" and len(ops) <= size and sum(sizes) <= max_bytes:
            stream.append(Group(ops))
            groups.append([op.path for op in ops])
        elif what == "op":
            stream.append(ops[0])

    out = list(batches(stream, size, lambda unit: sum(weight[op.path] for op in unit), max_bytes))

    flat = [op.path for batch, _ in out for op in batch]
    expected = [
        op.path
        for item in stream
        if not isinstance(item, Barrier)
        for op in (item.ops if isinstance(item, Group) else [item])
    ]
    assert flat == expected  # nothing lost, duplicated or reordered
    where = {op.path: i for i, (batch, _) in enumerate(out) for op in batch}
    for batch, _ in out:
        assert len(batch) <= size
        assert sum(weight[op.path] for op in batch) <= max_bytes
    for group in groups:
        assert len({where[p] for p in group}) == 1
    assert sum(barrier for _, barrier in out) == sum(isinstance(i, Barrier) for i in stream)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=80), st.integers(1, 10), st.integers(0, 3))
def test_no_batch_writes_a_document_twice_and_a_rewrite_waits_for_the_first(
    ids, size, in_flight
) -> None:
    stream = [Operation(DELETE, f"c/d{i}") for i in ids]

    out = list(batches(stream, size, in_flight=in_flight))

    assert [op.path for batch, _ in out for op in batch] == [op.path for op in stream]
    for i, (batch, _) in enumerate(out):
        paths = [op.path for op in batch]
        assert len(paths) == len(set(paths))
        for j in range(i + 1, min(len(out), i + 1 + in_flight)):  # sent while i may fly
            if {op.path for op in out[j][0]} & set(paths):
                # a rewrite while the first write may still be on the wire: a barrier between
                assert any(barrier for _, barrier in out[i:j])
