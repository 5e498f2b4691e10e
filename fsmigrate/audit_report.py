"""The audit report of one run, fit for a change ticket (markdown). No I/O: yields text.

Who ran it, when, from which host and tool version, against which project and database;
the script and its checksum; the dry-run it followed; planned / committed / skipped
counts per operation and per collection; errors and notes; and how to get the
before-images.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

STATUSES = ("planned", "committed", "skipped", "failed", "pending")


def collection_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


def per_collection(state: Any, run_id: str) -> dict[str, dict[str, int]]:
    """{collection: {status: n}}, streamed over the run's operations (flat memory)."""
    out: dict[str, dict[str, int]] = {}
    for row in state.ops(run_id):
        counts = out.setdefault(collection_of(row["path"]), {})
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return out


def followed_dry_run(state: Any, run: Any) -> Optional[Any]:
    """The dry-run a run followed: the one its reviewed plan came from (kind `plan`), or
    else the newest dry-run of the same revision and target before it."""
    if run["kind"] == "plan" and run["source"]:
        found = state.conn.execute(
            "SELECT * FROM runs WHERE mode='dry-run' AND invocation=? AND revision=?",
            (run["source"], run["revision"])).fetchone()
        if found is not None:
            return found
    return state.conn.execute(
        "SELECT * FROM runs WHERE mode='dry-run' AND project=? AND database=? AND revision=?"
        " AND started_at < ? ORDER BY started_at DESC LIMIT 1",
        (run["project"], run["database"], run["revision"], run["started_at"])).fetchone()


def markdown(state: Any, run_id: str, state_path: str) -> Iterator[str]:
    run = state.run(run_id)
    title = f"{run['kind']} {run['mode']} of migration {run['revision']}"
    yield f"# fsmigrate audit: {title}\n\n"
    yield f"_{run['description']}_\n\n"
    yield "| | |\n|---|---|\n"
    rows = [
        ("Run", f"`{run['id']}`"),
        ("Status", f"**{run['status']}**" + (f" ({run['error_kind']})" if run["error_kind"]
                                               else "")),
        ("Target", f"project `{run['project']}`, database `{run['database']}`"),
        ("Operator", f"{run['operator']} on host `{run['host']}`"),
        ("Tool", f"fsmigrate {run['tool_version']}"),
        ("Started", run["started_at"]),
        ("Finished", run["finished_at"] or "(unfinished)"),
        ("Script", f"revision `{run['revision']}`, sha256 `{run['checksum']}`"),
    ]
    if run["resumes"]:
        rows.append(("Resumes", f"run `{run['resumes']}`"))
    if run["mode"] == "apply":
        dry = followed_dry_run(state, run)
        if dry is None:
            rows.append(("Dry-run", "**none** recorded before this apply"))
        else:
            same = "same script" if dry["checksum"] == run["checksum"] else \
                f"**a different script** (sha256 `{dry['checksum'][:12]}..`)"
            if run["kind"] == "plan":
                rows.append(("Plan", f"applied the reviewed plan `{run['source']}` exactly"))
            rows.append(("Dry-run", f"`{dry['id']}` by {dry['operator']} at "
                                    f"{dry['started_at']}, {dry['planned']} operations "
                                    f"planned, {same}"))
    if run["retries"]:
        rows.append(("Retries", f"{run['retries']} (last: {run['last_retry_error']})"))
    for key, value in rows:
        yield f"| {key} | {value} |\n"

    yield "\n## Counts\n\n"
    yield "| operation | " + " | ".join(STATUSES) + " |\n|---|" + "---|" * len(STATUSES) + "\n"
    by_kind = state.op_counts(run_id)
    for kind in sorted(by_kind):
        yield f"| {kind} | " + " | ".join(str(by_kind[kind].get(s, 0)) for s in STATUSES) + " |\n"
    yield (f"| **total** | {run['planned']} planned | {run['committed']} committed | "
           f"{run['skipped']} skipped | {run['failed']} failed or unsettled | |\n")
    yield "\n### Per collection\n\n"
    yield "| collection | " + " | ".join(STATUSES) + " |\n|---|" + "---|" * len(STATUSES) + "\n"
    for collection, counts in sorted(per_collection(state, run_id).items()):
        yield f"| `{collection}` | " + " | ".join(str(counts.get(s, 0)) for s in STATUSES) \
            + " |\n"

    if run["error"]:
        yield f"\n## Error\n\n```\n{run['error']}\n```\n"
    notes = state.notes(run_id)
    if notes:
        yield "\n## Notes from the migration\n\n" + "".join(f"- {n}\n" for n in notes)
    skipped = list(state.ops(run_id, status="skipped", limit=200))
    if skipped:
        yield "\n## Skipped operations\n\n| document | operation | why |\n|---|---|---|\n"
        for op in skipped:
            yield f"| `{op['path']}` | {op['kind']} | {op['reason']} |\n"
        if run["skipped"] > len(skipped):
            yield f"\n... and {run['skipped'] - len(skipped)} more.\n"
    counts = json.loads(run["counts"] or "{}")
    yield "\n## Before-images\n\n"
    yield ("Every document this run changed or deleted was archived in the state file "
           f"(`{state_path}`) before the write was sent. To get them:\n\n")
    yield f"```sh\nfsmigrate --state {state_path} audit {run_id} --export before-images.jsonl\n"
    yield f"fsmigrate --project {run['project']} --state {state_path} restore {run_id} --dry-run\n```\n"
    if counts:
        yield "\nPlanned by kind: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) \
            + ".\n"


def export_before_images(state: Any, run_id: str) -> Iterator[str]:
    """One JSON line per archived document: path, operation, status, before-image."""
    from .report import dumps, op_dict

    state.run(run_id)
    for row in state.ops(run_id):
        if row["before"] is None:
            continue
        op = op_dict(row, images=True)
        yield dumps({"path": op["path"], "kind": op["kind"], "status": op["status"],
                     "before": op["before"]}) + "\n"
