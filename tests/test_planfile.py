"""Reviewed plans: `upgrade --dry-run --plan-out` then `apply PLAN`, exactly as reviewed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from fsmigrate.scripts.planfile import header_digest
from helpers import Fsm, seed_items, write_script

CLEANUP = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 2:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": doc.get("n") + 100})
"""


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    write_script(fsm.migrations, "0001", None, CLEANUP)
    return fsm


def state_of(client) -> dict[str, int]:
    return {s.id: s.get("n") for s in client.collection("items").stream()}


def test_plan_then_apply_does_exactly_the_plan(fsm: Fsm, fs_client, tmp_path) -> None:
    seed_items(fs_client, 10)
    plan = tmp_path / "plan.jsonl"
    made = fsm("upgrade", "--dry-run", "--plan-out", str(plan))
    assert made.exit_code == 0, made.output
    lines = plan.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["project"] == fsm.project and header["migrations"][0]["operations"] == 10
    assert len(lines) == 11 and state_of(fs_client) == {f"i{i:05d}": i for i in range(10)}

    # a document changes after the plan was reviewed: exactly that operation is skipped
    fs_client.document("items/i00004").update({"n": 4000})
    out = fsm.json("apply", str(plan))

    run = out["migrations"][0]
    assert (run["kind"], run["committed"], run["skipped"]) == ("plan", 9, 1)
    assert [op["path"] for op in run["operations"] if op["status"] == "skipped"] == ["items/i00004"]
    expected = {f"i{i:05d}": i + 100 for i in range(0, 10, 2)}
    expected["i00004"] = 4000
    assert state_of(fs_client) == expected
    assert fsm.json("status")["revisions"][0]["state"] == "applied"
    assert run["notes"][0].startswith(f"applies plan {header['plan_id']}")
    ticket = fsm("audit", run["run_id"], "--format", "markdown").stdout
    assert f"applied the reviewed plan `{header['plan_id']}` exactly" in ticket
    assert header["migrations"][0]["dry_run"] in ticket
    again = fsm("apply", str(plan))
    assert again.exit_code == 1 and "already applied" in again.stderr


def test_apply_refuses_a_changed_script_or_another_target(fsm: Fsm, fs_client, tmp_path) -> None:
    seed_items(fs_client, 4)
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan)).exit_code == 0
    other = Fsm(fsm.project + "-x", fsm.state, fsm.migrations)
    wrong = other("apply", str(plan))
    assert wrong.exit_code == 1 and "a plan for" in wrong.stderr
    script = fsm.migrations / "0001_test_0001.py"
    script.write_text(script.read_text() + "\n# edited after review\n")
    changed = fsm("apply", str(plan))
    assert changed.exit_code == 1 and "changed since plan" in changed.stderr
    assert state_of(fs_client) == {f"i{i:05d}": i for i in range(4)}
    assert fsm("upgrade", "--plan-out", str(plan)).exit_code == 2  # needs --dry-run
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{}\n")
    assert fsm("apply", str(junk)).exit_code == 1  # every refusal of a plan exits 1


def test_plan_of_many_operations_streams_and_resumes_after_a_crash(
    fsm: Fsm, fs_client, tmp_path
) -> None:
    seed_items(fs_client, 3000)
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--quiet").exit_code == 0
    args = fsm.argv("apply", str(plan), "--quiet")
    killed = subprocess.run(
        args,
        env={**os.environ, "FSMIGRATE_TEST_CRASH": "after-commit:3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL

    resumed = subprocess.run(args, capture_output=True, text=True, check=False)

    assert resumed.returncode == 0, resumed.stderr
    assert state_of(fs_client) == {f"i{i:05d}": i + 100 for i in range(0, 3000, 2)}
    history = fsm.json("history")["runs"]
    assert [(r["kind"], r["status"]) for r in history[:2]] == [
        ("plan", "succeeded"),
        ("plan", "interrupted"),
    ]


# ---- atomic groups and integrity (regressions: a plan split a rename; a cut plan applied) ----

RENAME_LOWER = """
def plan(ctx):
    for doc in ctx.scan("names"):
        if doc.id != doc.id.lower():
            yield ctx.rename(doc, doc.id.lower(), subcollections="unchecked")
"""


def test_apply_keeps_atomic_groups_whole_and_skips_a_group_as_one(
    tmp_path, project_id, fs_client, emulator
) -> None:
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, RENAME_LOWER)
    batch = fs_client.batch()
    for i in range(300):
        batch.set(fs_client.document(f"names/Doc{i:03d}"), {"n": i})
        if i % 250 == 249:
            batch.commit()
            batch = fs_client.batch()
    batch.commit()
    plan = tmp_path / "plan.jsonl"
    assert fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--quiet").exit_code == 0
    ops = [json.loads(line) for line in plan.read_text().splitlines()[1:]]
    groups: dict[int, list[str]] = {}
    for op in ops:
        assert op["group"] is not None
        groups.setdefault(op["group"], []).append(op["kind"])
    assert len(groups) == 300 and all(kinds == ["create", "delete"] for kinds in groups.values())

    # the old document of one rename changes after review: its create must not land either
    fs_client.document("names/Doc123").update({"n": -1})
    out = fsm.json("apply", str(plan), "--batch-size", "7")  # batches cut between groups only

    run = out["migrations"][0]
    assert (run["committed"], run["skipped"]) == (598, 2)
    skipped = {op["path"]: op["reason"] for op in run["operations"] if op["status"] == "skipped"}
    assert set(skipped) == {"names/Doc123", "names/doc123"}
    assert "changed since plan" in skipped["names/Doc123"]
    assert "atomic group" in skipped["names/doc123"] and "names/Doc123" in skipped["names/doc123"]
    now = {s.id: s.get("n") for s in fs_client.collection("names").stream()}
    assert now["Doc123"] == -1 and "doc123" not in now  # never both, never neither
    assert now == {**{f"doc{i:03d}": i for i in range(300) if i != 123}, "Doc123": -1}


def _seeded_plan(fsm: Fsm, fs_client, tmp_path: Path, n: int) -> Path:
    write_script(
        fsm.migrations,
        "0002",
        "0001",
        """
def plan(ctx):
    yield ctx.barrier()
""",
    )
    seed_items(fs_client, n)
    plan = tmp_path / "plan.jsonl"
    made = fsm("upgrade", "--dry-run", "--plan-out", str(plan), "--quiet")
    assert made.exit_code == 0, made.output
    return plan


def _truncate(lines: list[str]) -> list[str]:
    return lines[:201]


def _edit_a_line_consistently(lines: list[str]) -> list[str]:
    """Another document's operation in place of a reviewed one, itself well-formed."""
    op = json.loads(lines[5])
    other = json.loads(lines[6])
    op.update({k: other[k] for k in ("path", "write", "before", "precondition", "kind")})
    return [*lines[:5], json.dumps(op, sort_keys=True), *lines[6:]]


def _fix_the_header_count(lines: list[str]) -> list[str]:
    header = json.loads(lines[0])
    header["migrations"][0]["operations"] = 200
    return [json.dumps(header, sort_keys=True), *lines[1:201]]


def _path_unlike_its_write(lines: list[str]) -> list[str]:
    op = json.loads(lines[3])
    op["path"] = "items/somewhere-else"
    return [*lines[:3], json.dumps(op, sort_keys=True), *lines[4:]]


def _drop_a_migration(lines: list[str]) -> list[str]:
    header = json.loads(lines[0])
    header["migrations"] = header["migrations"][1:]  # and the header made consistent again
    header["header_sha256"] = header_digest(header)
    return [json.dumps(header, sort_keys=True), *lines[1:]]


def _reorder(lines: list[str]) -> list[str]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


def _not_json(lines: list[str]) -> list[str]:
    return [*lines[:300], lines[300][:40], *lines[301:]]


@pytest.mark.parametrize(
    "tamper, says",
    [
        (_truncate, "has 200 operation lines, the plan reviewed 500"),
        (_edit_a_line_consistently, "were edited after the plan was written"),
        (_fix_the_header_count, "header was edited"),
        (_path_unlike_its_write, "is not the document its Write protobuf names"),
        (_drop_a_migration, "which the header does not list"),
        (_reorder, "out of order"),
        (_not_json, "is not JSON"),
    ],
)
def test_a_plan_cut_short_or_edited_is_refused_before_any_write(
    fsm: Fsm, fs_client, tmp_path, tamper, says
) -> None:
    plan = _seeded_plan(fsm, fs_client, tmp_path, 500)
    lines = plan.read_text().splitlines()
    assert len(lines) == 501
    copy = tmp_path / "copy.jsonl"
    copy.write_text("\n".join(tamper(lines)) + "\n")

    out = fsm("apply", str(copy))

    assert out.exit_code == 1, out.output
    assert out.stderr.count("\n") == 1 and str(copy) in out.stderr and says in out.stderr
    assert state_of(fs_client) == {f"i{i:05d}": i for i in range(500)}  # nothing written
    assert fsm.json("status")["revisions"][0]["state"] == "pending"
    assert [r for r in fsm.json("history")["runs"] if r["kind"] == "plan"] == []  # no run at all


def test_the_applied_plan_digest_is_recorded_and_shown_in_the_audit(
    fsm: Fsm, fs_client, tmp_path
) -> None:
    import hashlib

    seed_items(fs_client, 6)
    plan = tmp_path / "plan.jsonl"
    made = fsm("upgrade", "--dry-run", "--plan-out", str(plan))
    digest = hashlib.sha256(plan.read_bytes()).hexdigest()  # what `sha256sum plan.jsonl` says
    assert digest in made.stderr
    crlf = tmp_path / "crlf.jsonl"  # a copy through a CRLF conversion is the same plan
    crlf.write_bytes(plan.read_bytes().replace(b"\n", b"\r\n"))

    run = fsm.json("apply", str(crlf))["migrations"][0]

    assert run["committed"] == 6
    history = {r["run_id"]: r for r in fsm.json("history")["runs"]}
    assert history[run["run_id"]]["plan_digest"] == digest
    dry = [r for r in history.values() if r["mode"] == "dry-run"]
    assert [r["plan_digest"] for r in dry] == [digest]
    for fmt in ("text", "markdown", "html", "json"):
        shown = fsm("audit", run["run_id"], "--format", fmt)
        assert shown.exit_code == 0 and digest in shown.stdout, fmt
