"""Traffic control and the estimate against the real emulator: the cap measured on the
journal's commit times, throttling answers injected at the gRPC level, and a dry-run's
estimate against what the apply that follows does."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from test_cli_upgrade import _run_on_a_terminal

from fsmigrate import api
from fsmigrate.firestore.store import Store, Target
from fsmigrate.scripts.operations import parse_timestamp
from grpcfaults import GrpcFaultProxy
from helpers import Fsm, seed_items, write_script

# items has no subcollections by design: no listing per document, so the plan outruns
# the cap and what is measured is the limiter
DELETE_ALL = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc, subcollections="keep")
"""

MIXED = """
repeatable = True

def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 3 == 0:
            yield ctx.delete(doc)
        elif doc.get("n") % 3 == 1:
            yield ctx.update(doc, {"seen": True})
    ctx.get("config/main")
    ctx.get_many(["config/main", "config/missing"])
    yield ctx.set("config/main", {"v": 2})      # blind: read just before it is written
    yield ctx.create("config/new", {"v": 1})
"""


def seed(client, n: int, collection: str = "items") -> None:
    seed_items(client, n, lambda i: {"n": i, "pad": "x" * (i % 90)}, collection=collection)


def cfg_of(fsm: Fsm) -> api.Config:
    return api.Config(project=fsm.project, state=fsm.state, migrations=fsm.migrations)


def commits(fsm: Fsm, run_id: str) -> list[tuple[float, int]]:
    """(commit time in seconds, operations) of each commit, from the run's journal."""
    found = api.audit(cfg_of(fsm), run_id)
    per_time: Counter[str] = Counter()
    for line in "".join(found.chunks("jsonl")).splitlines():
        op = json.loads(line)
        assert op["status"] == "committed"
        per_time[op["commit_time"]] += 1
    return sorted((parse_timestamp(t).timestamp(), n) for t, n in per_time.items())


def test_max_rate_holds_in_every_two_second_window_of_the_journal(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 2000)
    write_script(fsm.migrations, "0001", None, DELETE_ALL)

    started = time.monotonic()
    out = fsm.json("upgrade", "--max-rate", "400", "--batch-size", "100")
    elapsed = time.monotonic() - started

    run = out["migrations"][0]
    assert run["committed"] == 2000
    landed = commits(fsm, run["run_id"])
    assert sum(n for _, n in landed) == 2000
    for start, _ in landed:
        in_window = sum(n for t, n in landed if start <= t < start + 2.0)
        assert in_window <= 2 * 400 + 100, f"{in_window} operations in 2 s from {start}"
    assert elapsed >= (2000 - 100) / 400  # what the cap guarantees: the first commit is free
    traffic = run["traffic"]
    assert traffic["max_rate"] == 400 and traffic["ramp"] is None
    assert traffic["throttle_events"] == 0 and traffic["waited_seconds"] > 3


def test_the_cap_holds_for_all_commit_threads_together(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 1000)
    write_script(fsm.migrations, "0001", None, DELETE_ALL)

    started = time.monotonic()
    out = fsm.json("upgrade", "--max-rate", "400", "--batch-size", "50", "--concurrency", "4")

    assert out["migrations"][0]["committed"] == 1000
    assert time.monotonic() - started >= (1000 - 50) / 400  # not 400/s per thread


def test_the_dry_run_estimate_is_what_the_apply_then_does(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 600)
    fs_client.document("config/main").set({"v": 1, "note": "before"})
    write_script(fsm.migrations, "0001", None, MIXED)
    store = Store(Target(fsm.project, emulator_host="emulator"))
    touched = [f"items/i{i:05d}" for i in range(600) if i % 3 != 2] + ["config/main"]
    archived = sum(d.document_size() for d in store.get_many(touched).values())

    dry = fsm.json("upgrade", "--dry-run", "--max-rate", "1000")
    text = fsm("upgrade", "--dry-run", "--max-rate", "1000").output
    markdown = fsm("upgrade", "--dry-run", "--max-rate", "1000", "--format", "markdown").output
    applied = fsm.json("upgrade", "--max-rate", "1000")

    expected = {
        "reads": 600 + 1 + 2 + 1,
        "writes": 200 + 1 + 1,
        "deletes": 200,
        "archive_bytes": archived,
        "seconds_at_ramp": 402 / 1000,
    }
    estimate = dry["migrations"][0]["estimate"]
    assert estimate == expected and dry["estimate"] == expected  # the total: one migration
    actual = applied["migrations"][0]["actual"]
    assert {k: actual[k] for k in expected} == expected
    assert applied["actual"]["writes"] == 202 and actual["seconds"] > 0
    assert (
        f"estimate: 604 reads, 202 writes, 200 deletes, {archived / 1000:,.1f} KB to archive"
        in text
    )
    assert "Total estimate: 604 reads" in text and "0.4 s at the rate limits" in text
    assert f"| | 604 | 202 | 200 | {archived} | 0.402 |" in markdown
    history = {r["mode"]: r for r in fsm.json("history")["runs"]}  # newest first: the last dry-run
    assert history["dry-run"]["estimate"] == expected
    assert history["apply"]["actual"]["archive_bytes"] == archived


def test_throttling_answers_cut_the_rate_and_every_operation_lands_once(
    emulator, fs_client, project_id, tmp_path: Path, monkeypatch
) -> None:
    seed(fs_client, 600)
    write_script(tmp_path / "migrations", "0001", None, DELETE_ALL)
    cfg = api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )
    monkeypatch.setenv("FSMIGRATE_RAMP", "800/100/0.02")  # doubles every 1.2 s
    monkeypatch.setenv("FSMIGRATE_RETRY_INITIAL", "0.05")
    monkeypatch.setenv("FSMIGRATE_RETRY_MAX", "0.2")
    with GrpcFaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)
        # after the lease and the first batch: three answers in a row, one of each code
        proxy.fail_next(
            "Commit", grpc.StatusCode.RESOURCE_EXHAUSTED, after=2, details="Quota exceeded."
        )
        proxy.fail_next(
            "Commit",
            grpc.StatusCode.ABORTED,
            details="Too much contention on these documents. Please try again.",
        )
        proxy.fail_next("Commit", grpc.StatusCode.DEADLINE_EXCEEDED)
        result = api.upgrade(cfg, api.RunOptions(ramp=True, batch_size=20))

    run = result.runs[0]
    traffic = run.traffic
    assert proxy.failed["Commit"] == 3
    assert traffic["throttle_events"] == 3
    assert traffic["by_code"] == {"RESOURCE_EXHAUSTED": 1, "ABORTED": 1, "DEADLINE_EXCEEDED": 1}
    # each retry was sent at the rate of the last cut and refused again: three halvings
    assert traffic["cuts"] == 3 and traffic["lowest_rate"] == 800 / 8
    assert traffic["final_rate"] > traffic["lowest_rate"]  # it recovered along the ramp
    assert run.committed == 600 and run.retries == 3
    items = [n for n in proxy.committed_names if "/documents/items/" in n]
    assert len(items) == len(set(items)) == 600  # every delete landed exactly once
    assert list(fs_client.collection("items").limit(1).stream()) == []
    audit = "".join(api.audit(cfg, run.run_id).chunks("text"))
    assert (
        "3 throttling event(s) (ABORTED 1, DEADLINE_EXCEEDED 1, RESOURCE_EXHAUSTED 1)" in audit
        and "lowest limit 100 ops/s" in audit
    )


def test_apply_rerun_and_restore_take_the_limits_too(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 30)
    write_script(fsm.migrations, "0001", None, MIXED)
    plan = fsm.state.parent / "plan.jsonl"

    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan)).exit_code == 0
    assert fsm("apply", str(plan), "--max-rate", "1000").exit_code == 0
    rerun = fsm.json("rerun", "0001", "--dry-run", "--ramp-start", "50")
    applied = next(r for r in fsm.json("history")["runs"] if r["kind"] == "plan")
    restored = fsm.json("restore", applied["run_id"], "--max-rate", "700", "--yes")

    assert applied["traffic"]["max_rate"] == 1000 and applied["actual"]["deletes"] == 10
    assert rerun["migrations"][0]["traffic"]["ramp"]["start"] == 50
    assert rerun["migrations"][0]["estimate"]["seconds_at_ramp"] == pytest.approx(
        rerun["migrations"][0]["planned"] / 50, abs=0.001
    )
    run = restored["migrations"][0]
    assert run["traffic"]["max_rate"] == 700 and run["actual"]["writes"] == 10


def test_bad_limits_are_refused_before_anything_is_written(fsm: Fsm, monkeypatch) -> None:
    write_script(fsm.migrations, "0001", None, DELETE_ALL)
    assert fsm("upgrade", "--max-rate", "0").exit_code == 2
    result = fsm("upgrade", "--no-ramp", "--ramp-start", "100")
    assert result.exit_code == 2 and "--ramp-start" in result.output
    monkeypatch.setenv("FSMIGRATE_RAMP", "fast")
    result = fsm("upgrade", "--dry-run")
    assert result.exit_code == 2 and "START/PERCENT/MINUTES" in result.output
    assert not fsm.state.exists()


def test_the_progress_bar_shows_the_limit(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 1200)
    write_script(fsm.migrations, "0001", None, DELETE_ALL)
    base = [
        "--project",
        fsm.project,
        "--state",
        str(fsm.state),
        "--migrations",
        str(fsm.migrations),
        "upgrade",
    ]

    limited = _run_on_a_terminal(base + ["--max-rate", "5000"])

    assert "limit 5,000 ops/s" in limited and "APPLIED" in limited


@pytest.mark.parametrize("policy", ['"paths"', "keep_n"])
def test_the_estimate_counts_what_the_archive_policy_keeps(fsm: Fsm, fs_client, policy) -> None:
    seed(fs_client, 60)
    write_script(
        fsm.migrations,
        "0001",
        None,
        f"""
def keep_n(data):
    return {{"n": data["n"]}}

archive = {policy}
"""
        + DELETE_ALL,
    )
    store = Store(Target(fsm.project, emulator_host="emulator"))
    full = sum(
        d.document_size() for d in store.get_many([f"items/i{i:05d}" for i in range(60)]).values()
    )

    estimate = fsm.json("upgrade", "--dry-run")["estimate"]
    actual = fsm.json("upgrade")["actual"]

    assert estimate["deletes"] == actual["deletes"] == 60
    assert estimate["archive_bytes"] == actual["archive_bytes"]
    if policy == '"paths"':
        assert estimate["archive_bytes"] == 0  # nothing of the documents is kept
    else:
        assert 0 < estimate["archive_bytes"] < full  # the redacted documents: n, no pad
