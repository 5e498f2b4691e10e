"""What is under documents, read the way Firestore lays it out (issue 35): ctx.delete's
default finds the documents that have a subtree with a few keys-only queries per batch
instead of one listing call each, with the same refusals and notes; a subtree delete or
move reads the subtree as one stream and plans each document after what is under it, in
bounded batches; a read answered UNKNOWN or INTERNAL is asked again within the patience."""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from fsmigrate import api
from fsmigrate.firestore.store import RetryPolicy, Store, Target
from fsmigrate.firestore.subtree import SubtreeCheck, post_order, with_subtrees
from grpcfaults import GrpcFaultProxy
from helpers import Fsm, ops_of, seed_docs, write_script

FAST = RetryPolicy(patience=30, initial=0.05, maximum=0.5, timeout=10)


@pytest.fixture
def proxy(emulator, monkeypatch):
    """The client and fsmigrate's own channel -> a gRPC proxy that counts calls and
    answers chosen ones with a status of its own -> the emulator."""
    with GrpcFaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)
        yield proxy


def config(tmp_path: Path, project_id: str) -> api.Config:
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def existing(client: Any, root: str = "users") -> set[str]:
    found: set[str] = set()

    def walk(collection: Any) -> None:
        for ref in collection.list_documents():
            if ref.get().exists:
                found.add(ref.path)
            for sub in ref.collections():
                walk(sub)

    walk(client.collection(root))
    return found


# ---- the default's check -----------------------------------------------------------------


def random_tree(rnd: random.Random, users: int) -> dict[str, dict]:
    """users/uNNN, most existing, some missing (only a subtree), some with subtrees of
    one or two levels, some with `orders` (a collection group) of their own."""
    docs: dict[str, dict] = {}
    for u in range(users):
        user = f"users/u{u:03d}"
        if rnd.random() < 0.85:
            docs[user] = {"u": u}
        if rnd.random() < 0.15:
            docs[f"{user}/prefs/p{rnd.randint(0, 3)}"] = {}
        for o in range(rnd.choice([0, 0, 1, 2])):
            docs[f"{user}/orders/o{o}"] = {"o": o}
            if rnd.random() < 0.3:
                docs[f"{user}/orders/o{o}/lines/l0"] = {}
    for u in range(users):
        if f"users/u{u:03d}" not in docs and not any(
            p.startswith(f"users/u{u:03d}/") for p in docs
        ):
            docs[f"users/u{u:03d}/prefs/p0"] = {}  # a missing document: only its subtree
    return docs


@pytest.mark.parametrize("seed", [1, 2])
def test_the_check_finds_exactly_what_a_listing_finds_at_any_density(
    emulator, fs_client, project_id: str, seed: int
) -> None:
    """Documents with and without subtrees, missing ones (nothing but a subtree), nested
    ones and the members of a collection group, picked densely and sparsely: the
    documents found to have a subtree are exactly those ListCollectionIds lists."""
    rnd = random.Random(seed)
    docs = seed_docs(fs_client, random_tree(rnd, 120))
    store = Store(Target(project_id, emulator_host="set"), policy=FAST)
    users = [f"users/u{u:03d}" for u in range(120)]
    orders = sorted({p for p in docs if p.split("/")[-2] == "orders"})
    every = users + orders
    truth = {p for p in every if store.subcollections(p)}
    assert truth & set(users) and truth & set(orders) and set(every) - truth  # both kinds

    for density in (1.0, 0.5, 0.05):
        picked = [p for p in every if rnd.random() < density] or every[:1]
        assert with_subtrees(store, picked) == truth & set(picked), density
        # batch after batch of one plan, the names read past a batch kept for the next
        check = SubtreeCheck(store, dt.datetime.now(dt.timezone.utc))
        found: set[str] = set()
        for start in range(0, len(picked), 13):
            found |= check.find(picked[start : start + 13])
        assert found == truth & set(picked), density
    assert with_subtrees(store, []) == set()


def test_the_check_of_a_batch_in_a_row_takes_one_query_and_no_listing(
    proxy, fs_client, project_id: str
) -> None:
    """200 documents without subtrees, then the same with one subtree: one keys-only
    query decides the batch; the listing is only made for the document refused (the
    note's names)."""
    seed_docs(fs_client, {f"items/i{i:04d}": {"i": i} for i in range(200)})
    store = Store(Target(project_id, emulator_host="set"), policy=FAST)
    paths = [f"items/i{i:04d}" for i in range(200)]
    proxy.calls.clear()

    assert with_subtrees(store, paths) == set()
    assert (proxy.calls["RunQuery"], proxy.calls["ListCollectionIds"]) == (1, 0)

    fs_client.document("items/i0100/events/e1").set({})
    proxy.calls.clear()
    assert with_subtrees(store, paths) == {"items/i0100"}
    assert proxy.calls["RunQuery"] <= 3 and proxy.calls["ListCollectionIds"] == 0

    # batches of 40 of one plan: the names a query reads past its batch serve the next
    check = SubtreeCheck(store, dt.datetime.now(dt.timezone.utc))
    proxy.calls.clear()
    found = set().union(*(check.find(paths[i : i + 40]) for i in range(0, 200, 40)))
    assert found == {"items/i0100"} and proxy.calls["RunQuery"] <= 3


def test_the_first_batch_is_read_ahead_from_the_plans_first_delete(
    emulator, fs_client, project_id: str
) -> None:
    """`expect` (ctx.delete's first check) starts the first window's query on a thread
    before the batch is full: the batch's check then makes no query of its own, and finds
    the same documents as without it; a hint that does not match the batch is dropped."""
    seed_docs(fs_client, {f"items/i{i:04d}": {"i": i} for i in range(120)})
    fs_client.document("items/i0050/events/e1").set({})
    store = Store(Target(project_id, emulator_host="set"), policy=FAST)
    paths = [f"items/i{i:04d}" for i in range(120)]
    threads: list[str] = []
    names_from = store.names_from

    def recorded(*args: Any, **kwargs: Any) -> list[str]:
        threads.append(threading.current_thread().name)
        return names_from(*args, **kwargs)

    store.names_from = recorded  # type: ignore[method-assign]
    at = dt.datetime.now(dt.timezone.utc)

    check = SubtreeCheck(store, at)
    check.expect(paths[0], 2 * 60)
    found = check.find(paths[:60])
    assert threads == ["fsmigrate-subtree-ahead"]  # the first batch waited for no query
    assert found | check.find(paths[60:]) == {"items/i0050"}

    threads.clear()
    check = SubtreeCheck(store, at)
    check.expect("items/elsewhere", 2 * 60)  # not where the batch starts: not used
    assert check.find(paths[:60]) == {"items/i0050"}
    assert threading.current_thread().name in threads


GROUP_DELETE = """
def plan(ctx):
    for doc in ctx.scan("orders", group=True):
        yield ctx.delete(doc)
"""


def test_the_default_refuses_the_members_of_a_collection_group_with_subtrees(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    """A collection-group scan (orders under many users, some of the users missing):
    each order with lines under it is refused with the note naming them; the others go."""
    docs = {
        "users/a": {},
        "users/a/orders/o1": {},
        "users/a/orders/o1/lines/l1": {},
        "users/a/orders/o2": {},
        "users/ghost/orders/o1": {},  # users/ghost is missing
        "users/ghost/orders/o1/lines/l1": {},
        "users/ghost/orders/o1/notes/n1": {},
        "users/ghost/orders/o3": {},
        "shops/s/orders/o1": {},
    }
    seed_docs(fs_client, docs)
    cfg = config(tmp_path, project_id)
    write_script(cfg.migrations, "0001", None, GROUP_DELETE)

    run = api.upgrade(cfg).runs[0]

    assert run.status == "succeeded" and run.committed == 3
    assert sorted(n for n in run.notes if n.startswith("REFUSED")) == [
        "REFUSED delete users/a/orders/o1: users/a/orders/o1 has subcollections lines "
        "(subcollections='refuse'; 'delete' deletes them too, 'keep' leaves them)",
        "REFUSED delete users/ghost/orders/o1: users/ghost/orders/o1 has subcollections "
        "lines, notes (subcollections='refuse'; 'delete' deletes them too, 'keep' leaves them)",
    ]
    assert existing(fs_client) == {
        "users/a",
        "users/a/orders/o1",
        "users/a/orders/o1/lines/l1",
        "users/ghost/orders/o1",
        "users/ghost/orders/o1/lines/l1",
        "users/ghost/orders/o1/notes/n1",
    }


def test_a_missing_document_is_refused_by_the_default_with_its_subcollections(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    seed_docs(fs_client, {"users/ghost/orders/o9": {}, "users/real": {}})
    cfg = config(tmp_path, project_id)
    write_script(
        cfg.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("users", missing=True):
        yield ctx.delete(doc)
    for doc in ctx.scan("users"):
        yield ctx.delete(doc)
""",
    )

    run = api.upgrade(cfg).runs[0]

    assert run.committed == 1 and existing(fs_client) == {"users/ghost/orders/o9"}
    assert any(
        n.startswith("REFUSED delete users/ghost: users/ghost has subcollections orders")
        for n in run.notes
    )


# ---- subtrees as a stream ----------------------------------------------------------------


def test_post_order_puts_each_document_after_what_is_under_it() -> None:
    class D:
        def __init__(self, path: str) -> None:
            self.path = path

    names = ["a/1", "a/1/b/2", "a/1/b/2/c/3", "a/1/b/4", "a/10", "a/10/b/1", "a/2"]
    out = [d.path for d in post_order(D(n) for n in names)]
    assert out == ["a/1/b/2/c/3", "a/1/b/2", "a/1/b/4", "a/1", "a/10/b/1", "a/10", "a/2"]
    for i, path in enumerate(out):  # nothing under a document comes after it
        assert not any(later.startswith(path + "/") for later in out[i + 1 :])


def deep_tree(users: int = 1, events: int = 30) -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for u in range(users):
        docs[f"users/u{u}"] = {"u": u}
        for e in range(events):
            docs[f"users/u{u}/events/e{e:03d}"] = {"e": e}
            if e % 3 == 0:
                docs[f"users/u{u}/events/e{e:03d}/parts/p0"] = {"e": e}
                docs[f"users/u{u}/events/e{e:03d}/parts/p0/bits/b0"] = {"e": e}
        docs[f"users/u{u}/prefs/p0"] = {}
    return docs


DELETE_U0 = """
def plan(ctx):
    yield ctx.delete(ctx.get("users/u0"), subcollections="delete")
"""


def test_a_subtree_bigger_than_a_batch_is_read_in_one_query_and_deleted_children_first(
    tmp_path: Path, proxy, fs_client, project_id: str
) -> None:
    """Three levels under users/u0, batches of 7: one listing (the parent's, for the
    note), the subtree read by one query, every document deleted after what is under it
    and archived, the parent last."""
    docs = seed_docs(fs_client, deep_tree())
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE_U0)
    proxy.calls.clear()

    out = fsm.json("upgrade", "--batch-size", "7")["migrations"][0]

    assert out["committed"] == len(docs) and existing(fs_client) == set()
    assert proxy.calls["ListCollectionIds"] == 1
    # the subtree's, and the run's reads of its markers and of the Beam journals' records
    assert proxy.calls["RunQuery"] == 3
    assert any("deleted in stages" in n and f"{len(docs) - 1} documents" in n for n in out["notes"])
    ops = ops_of(fsm.state, status="committed")
    order = [op["path"] for op in ops]  # in the order planned (journaled)
    assert order[-1] == "users/u0" and sorted(order) == sorted(docs)
    for i, path in enumerate(order):
        assert not any(p.startswith(path + "/") for p in order[i + 1 :]), path
    assert all(op["before"] for op in ops)
    batches = {op["batch"] for op in ops}
    assert len(batches) >= len(docs) // 7


def test_a_subtree_is_moved_by_rename_whatever_its_size(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    docs = seed_docs(fs_client, deep_tree(events=12))
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(
        fsm.migrations,
        "0001",
        None,
        """
def plan(ctx):
    yield ctx.rename(ctx.get("users/u0"), "v0", subcollections="move")
""",
    )

    out = fsm.json("upgrade", "--batch-size", "4")["migrations"][0]

    assert out["status"] == "succeeded" and out["committed"] == 2 * len(docs)
    moved = {p.replace("users/u0", "users/v0", 1) for p in docs}
    assert existing(fs_client) == moved
    for path, data in docs.items():
        assert fs_client.document(path.replace("users/u0", "users/v0", 1)).get().to_dict() == data


def test_a_subtree_delete_reads_at_the_plans_read_time_and_skips_what_changed(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    """A descendant written after the plan's read time is skipped alone (the stages are
    not atomic); one created after it is not in the plan and stays."""
    docs = seed_docs(fs_client, deep_tree(events=12))
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE_U0)
    plan = tmp_path / "plan.jsonl"
    dry = fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--batch-size", "5")
    assert dry.exit_code == 0, dry.output
    fs_client.document("users/u0/events/e003").set({"e": "changed"})
    fs_client.document("users/u0/events/e999").set({"e": "new"})

    out = fsm.json("apply", str(plan), "--batch-size", "5")["migrations"][0]

    assert (out["committed"], out["skipped"]) == (len(docs) - 1, 1)
    assert existing(fs_client) == {"users/u0/events/e003", "users/u0/events/e999"}


# ---- retries of reads ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL])
def test_every_read_answered_unknown_or_internal_is_asked_again(
    proxy, fs_client, project_id: str, code: grpc.StatusCode
) -> None:
    seed_docs(fs_client, {**deep_tree(events=3), "users/ghost/prefs/p0": {}})
    store = Store(Target(project_id, emulator_host="set"), policy=FAST)
    calls = {
        "RunQuery": lambda: [d.path for d in store.scan("users")],
        "BatchGetDocuments": lambda: sorted(store.get_many(["users/u0", "users/x"])),
        "RunAggregationQuery": lambda: store.count("users"),
        "ListCollectionIds": lambda: store.subcollections("users/u0"),
        "ListDocuments": lambda: [m.path for m in store.missing("users")],
    }
    for method, call in calls.items():
        expected = call()
        proxy.fail_next(method, code, times=2)
        retries = store.retries
        assert call() == expected, method
        assert proxy.pending_faults(method) == 0 and store.retries == retries + 2, method
    expected = [d.path for d in store.descendants("users/u0")]
    proxy.fail_next("RunQuery", code, times=2)
    assert [d.path for d in store.descendants("users/u0")] == expected
    proxy.fail_next("RunQuery", code, times=2)
    assert with_subtrees(store, ["users/u0", "users/zz"]) == {"users/u0"}
    assert f"injected {code.name}" in (store.last_retry_error or "")


def test_a_subtree_delete_rides_out_unknown_answers_to_its_reads(
    tmp_path: Path, proxy, fs_client, project_id: str, monkeypatch
) -> None:
    """The failure that ended a 20,000-descendant run (`listing subcollections of ...:
    Unknown`) and the same on the subtree's query and the parent's read: retried."""
    monkeypatch.setenv("FSMIGRATE_RETRY_INITIAL", "0.05")
    docs = seed_docs(fs_client, deep_tree(events=20))
    cfg = config(tmp_path, project_id)
    write_script(cfg.migrations, "0001", None, DELETE_U0)
    for method in ("ListCollectionIds", "RunQuery", "BatchGetDocuments"):
        proxy.fail_next(method, grpc.StatusCode.UNKNOWN, times=2)

    run = api.upgrade(cfg, api.RunOptions(batch_size=9)).runs[0]

    assert run.status == "succeeded" and run.committed == len(docs)
    assert existing(fs_client) == set()
    assert run.retries >= 6 and not any(proxy.pending_faults(m) for m in proxy.calls)


@pytest.mark.parametrize("landed", [False, True], ids=["lost-before", "answer-lost"])
def test_a_commit_answered_unknown_is_reread_and_settled_in_the_same_run(
    tmp_path: Path, proxy, fs_client, project_id: str, landed: bool
) -> None:
    """A commit answered UNKNOWN may or may not have landed, as after a deadline: the run
    re-reads its documents, records what landed as committed without sending it again,
    sends again only what did not land, and goes on; each document deleted exactly once."""
    seed_docs(fs_client, {f"users/u{i}": {} for i in range(10)})
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
    seeded = len(proxy.committed_names)
    # the first data commit (after the two writes of the lease)
    proxy.fail_next("Commit", grpc.StatusCode.UNKNOWN, after=2, forwarded=landed)

    run = api.upgrade(cfg, api.RunOptions(batch_size=4)).runs[0]

    assert proxy.failed["Commit"] == 1
    assert run.status == "succeeded" and existing(fs_client) == set()
    deleted = [n.rsplit("/", 1)[1] for n in proxy.committed_names[seeded:] if "/users/" in n]
    assert sorted(deleted) == sorted(f"u{i}" for i in range(10))  # each exactly once
    assert run.committed == 10
    assert [op["status"] for op in ops_of(cfg.state, run.run_id)] == ["committed"] * 10


class _Doc:
    """A document as the planner sees it (pure logic: no Firestore)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.id = path.rsplit("/", 1)[1]
        self.update_time = None
        self.exists = True


class _Ctx:
    """What Renamer.delete asks of ctx, counting what it pulls from the subtree."""

    max_group = 500

    def __init__(self, n: int) -> None:
        self.n, self.pulled, self.notes = n, 0, []

    def subcollections(self, doc: Any) -> list[str]:
        return ["events"]

    def subtree(self, path: str) -> Any:
        for i in range(self.n):
            self.pulled += 1
            yield _Doc(f"{path}/events/e{i:06d}")
            if i % 2 == 0:
                self.pulled += 1
                yield _Doc(f"{path}/events/e{i:06d}/parts/p0")

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_a_big_subtree_is_planned_as_it_is_read_and_a_small_one_is_one_atomic_group() -> None:
    from fsmigrate.normalize import Renamer

    big = _Ctx(20_000)
    group = Renamer(big).delete(_Doc("users/u1"), "delete")
    children = iter(group.children)
    first = next(children)
    assert big.pulled <= big.max_group + 2  # one more than fits, and the next one
    assert [op.path for op in first.ops] == ["users/u1/events/e000000/parts/p0"]
    assert big.notes == []  # counted once read
    rest = [op.path for g in children for op in g.ops]
    assert len(rest) + 1 == 30_000 and big.pulled == 30_000
    assert [op.path for op in group.ops] == ["users/u1"]  # after every child
    assert big.notes == [
        "DELETE users/u1 (with its subtree): 30000 documents under events; too many for one "
        "commit: deleted in stages, each after what is under it, users/u1 last"
    ]

    small = _Ctx(200)
    group = Renamer(small).delete(_Doc("users/u1"), "delete")
    assert list(group.children) == [] and len(group.ops) == 301  # all in one commit
    assert group.ops[-1].path == "users/u1" and group.ops[0].path.endswith("/parts/p0")
    assert small.notes == ["DELETE users/u1 (with its subtree): 300 documents under events"]
