"""The audit report of one run, fit for a change ticket (markdown or HTML). No I/O: yields
text.

Who ran it, when, from which host and tool version, against which project and database;
the script and its checksum; the dry-run it followed; planned / committed / skipped
counts per operation and per collection; errors and notes; and how to get the
before-images.
"""
from __future__ import annotations

import json
import re
from html import escape
from typing import Any, Iterable, Iterator, Optional

from .estimate import describe
from .traffic import describe_stats

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


def count_cells(by_status: dict[str, int]) -> list[int]:
    """The STATUSES columns of one row of the counts tables.

    `planned` is every operation the run planned, whatever became of it (the same as the
    run's total `planned`): an apply's rows are committed / skipped / failed / pending,
    never `planned`, so the status alone would say 0 planned. The other columns are the
    operations with that status.
    """
    return [sum(by_status.values()) if s == "planned" else by_status.get(s, 0)
            for s in STATUSES]


def _count_row(label: str, by_status: dict[str, int]) -> str:
    return f"| {label} | " + " | ".join(str(n) for n in count_cells(by_status)) + " |\n"


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
                rows.append(("Plan", f"applied the reviewed plan `{run['source']}` exactly "
                                     f"(plan file sha256 `{run['plan_digest']}`)"))
            rows.append(("Dry-run", f"`{dry['id']}` by {dry['operator']} at "
                                    f"{dry['started_at']}, {dry['planned']} operations "
                                    f"planned, {same}"))
    elif run["plan_digest"]:
        rows.append(("Plan", f"wrote the plan `{run['invocation']}` for review (plan file "
                             f"sha256 `{run['plan_digest']}`)"))
    if run["retries"]:
        rows.append(("Retries", f"{run['retries']} (last: {run['last_retry_error']})"))
    rows.extend(_usage_rows(state, run))
    for key, value in rows:
        yield f"| {key} | {value} |\n"

    yield "\n## Counts\n\n"
    yield ("_planned_ counts every operation the run planned; the other columns say what "
           "became of them.\n\n")
    yield "| operation | " + " | ".join(STATUSES) + " |\n|---|" + "---|" * len(STATUSES) + "\n"
    by_kind = state.op_counts(run_id)
    for kind in sorted(by_kind):
        yield _count_row(kind, by_kind[kind])
    yield (f"| **total** | {run['planned']} planned | {run['committed']} committed | "
           f"{run['skipped']} skipped | {run['failed']} failed or unsettled | |\n")
    yield "\n### Per collection\n\n"
    yield "| collection | " + " | ".join(STATUSES) + " |\n|---|" + "---|" * len(STATUSES) + "\n"
    for collection, counts in sorted(per_collection(state, run_id).items()):
        yield _count_row(f"`{collection}`", counts)

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


def _usage_rows(state: Any, run: Any) -> list[tuple[str, str]]:
    """The run's estimate (a dry-run) or what it did (an apply), and its traffic: the
    limits and the throttling events."""
    traffic, figures = state.usage(run)
    rows = []
    if figures is not None:
        rows.append(("Estimate" if run["mode"] == "dry-run" else "Done", describe(figures)))
    if traffic is not None:
        rows.append(("Traffic", describe_stats(traffic)))
    return rows


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


def html(state: Any, run_id: str, state_path: str) -> Iterator[str]:
    """The same report as a standalone HTML page (the markdown above, rendered)."""
    run = state.run(run_id)
    yield ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
           f"<title>fsmigrate audit {escape(run['id'])}</title><style>"
           "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
           "code,pre{background:#f4f4f4}</style></head><body>\n")
    yield from _render(markdown(state, run_id, state_path))
    yield "</body></html>\n"


def _render(chunks: Iterable[str]) -> Iterator[str]:
    """Our own markdown subset (headings, tables, lists, code blocks) to HTML."""
    in_code = in_list = False
    table: list[str] = []
    for line in "".join(chunks).splitlines():
        if line.startswith("```"):
            yield "</pre>\n" if in_code else "<pre>"
            in_code = not in_code
            continue
        if in_code:
            yield escape(line) + "\n"
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            yield _table(table)
            table = []
        if in_list and not line.startswith("- "):
            yield "</ul>\n"
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            yield f"<h{level}>{_inline(line[level:].strip())}</h{level}>\n"
        elif line.startswith("- "):
            if not in_list:
                yield "<ul>\n"
                in_list = True
            yield f"<li>{_inline(line[2:])}</li>\n"
        elif line.strip():
            yield f"<p>{_inline(line)}</p>\n"
    if table:
        yield _table(table)
    if in_list:
        yield "</ul>\n"


def _table(lines: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
            if not set(line.replace("|", "").strip()) <= {"-"}]
    out = ["<table>"]
    for i, cells in enumerate(rows):
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>\n"


def _inline(text: str) -> str:
    text = escape(text)
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    return re.sub(r"(?<![\w])_([^_]+)_(?![\w])", r"<i>\1</i>", text)
