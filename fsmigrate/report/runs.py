"""Render runs, plans and audit rows as text / markdown / json / jsonl. No I/O here:
every renderer yields chunks of text, so a report of 100,000 operations streams."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from fsmigrate.engine import estimate
from fsmigrate.engine.traffic import Limits, describe_stats
from fsmigrate.errors import RunStopped
from fsmigrate.firestore import codec
from fsmigrate.report.envelope import envelope
from fsmigrate.report.mdsafe import bold, code, header, md, text
from fsmigrate.report.mdsafe import row as md_row
from fsmigrate.scripts import archive
from fsmigrate.scripts.operations import KINDS
from fsmigrate.state.compact import OpRow
from fsmigrate.state.runs import run_dict
from fsmigrate.words import plural

TEXT_SAMPLE = 10
APPLY_HINT = "the same command without --dry-run"


# one encoder for every call (json.dumps with options builds a new one each time: reports
# dump an object per operation)
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False)


def dumps(obj: Any) -> str:
    return _ENCODER.encode(obj)


def op_dict(row: sqlite3.Row, *, images: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": row["seq"],
        "batch": row["batch"],
        "kind": row["kind"],
        "path": row["path"],
        "label": row["label"],
        "status": row["status"],
        "reason": row["reason"],
        "commit_time": row["commit_time"],
        "error": row["error"],
        "precondition": _precondition(row),
    }
    if images:
        before = row["before"]
        out["before"] = codec.document_to_json(codec.bytes_to_document(before)) if before else None
        out["after"] = json.loads(row["after"]) if row["after"] else None
    return out


def _precondition(row: Any) -> Any:
    if isinstance(row, OpRow):  # the compact layout: no JSON text to parse
        return row.precondition_value()
    return json.loads(row["precondition"]) if row["precondition"] else None


# ---- upgrade (dry-run or apply) ------------------------------------------------------

NOTES_SHOWN = 30  # notes (and skipped documents) printed per run in text; all in --report


@dataclass
class Outcome:
    """How a writing command (upgrade, rerun, apply, restore) ended, for its report:
    `error` is what stopped it (None: it ran to its end), `exit_code` the code it exits
    with; `plan` the plan file it wrote (--plan-out) as JSON."""

    command: str
    dry_run: bool
    error: Optional[BaseException] = None
    exit_code: int = 0
    plan: Optional[dict[str, Any]] = None
    warnings: Sequence[str] = ()
    apply_hint: str = APPLY_HINT

    def word(self, runs: Sequence[Any]) -> str:
        """applied / planned / nothing to do / failed / stopped / interrupted / refused."""
        if isinstance(self.error, KeyboardInterrupt):
            return "interrupted"
        if isinstance(self.error, RunStopped):
            return "stopped"  # on purpose (`control stop`, --max-skip-ratio): not a failure
        if self.error is not None:
            return "failed" if runs else "refused"
        if not runs:
            return "nothing to do"
        return "planned" if self.dry_run else "applied"

    def next_step(self, runs: Sequence[Any]) -> Optional[str]:
        """The one next-step line of the text report (a failure's is on stderr, with it)."""
        if self.error is not None or not runs or not self.dry_run:
            return None
        if self.plan is not None:
            return f"To apply this plan: fsmigrate apply {self.plan['path']}"
        return f"To apply: {self.apply_hint}"


def upgrade_chunks(
    state: Any,
    run_ids: Sequence[str],
    target: Any,
    fmt: str,
    *,
    full: bool,
    outcome: Outcome,
) -> Iterator[str]:
    runs = [state.run(r) for r in run_ids]
    if fmt == "json":
        yield from _upgrade_json(state, runs, target, outcome)
    elif fmt == "markdown":
        yield from _upgrade_markdown(state, runs, target, outcome)
    else:
        yield from _upgrade_text(state, runs, target, full=full, outcome=outcome)


def _problems_first(state: Any, run_id: str) -> Iterator[str]:
    """A run's notes, conflicts and refusals first, each kind in order: read as written,
    not held (a run can have tens of thousands)."""
    yield from state.iter_notes(run_id, problems=True)
    yield from state.iter_notes(run_id, problems=False)


def _counts_line(row: sqlite3.Row) -> str:
    counts = json.loads(row["counts"] or "{}")
    parts = [f"{counts.get(k, 0):,} {k}" for k in KINDS if counts.get(k)]
    return ", ".join(parts) or "no operations"


_HEADS = {
    "planned": "DRY-RUN (nothing was written to Firestore)",
    "applied": "APPLIED",
    "failed": "FAILED",
    "stopped": "STOPPED",
    "interrupted": "INTERRUPTED",
}
_ENDED = ("failed", "stopped", "interrupted")  # a run that did not reach its end


def _error_label(row: sqlite3.Row) -> str:
    """What ended a run: `stopped` (on purpose, by `control stop` or its skip budget) or
    `error`."""
    return "stopped" if row["status"] == "stopped" else "error"


def _head(outcome: Outcome, runs: Sequence[sqlite3.Row], target: Any) -> str:
    word = outcome.word(runs)
    if word == "nothing to do":
        return f"Nothing to do: {target.describe()} is up to date.\n"
    head = _HEADS[word]
    if word in _ENDED:
        done = sum(1 for r in runs if r["status"] == "succeeded")
        what = "dry-run" if outcome.dry_run else outcome.command
        head += (
            f" ({what}; {done} of {plural(len(runs), 'migration')} finished"
            + ("; nothing was written to Firestore" if outcome.dry_run else "")
            + ")"
        )
    return f"{head}: {target.describe()}\n"


def _upgrade_text(
    state: Any, runs: Sequence[sqlite3.Row], target: Any, *, full: bool, outcome: Outcome
) -> Iterator[str]:
    if outcome.word(runs) == "refused":
        return  # said once, on stderr
    yield _head(outcome, runs, target)
    if not runs:
        return
    dry = outcome.dry_run
    for row in runs:
        yield (
            f"\n{row['revision']} {row['description']}  [run {row['id']}, {row['status']}]\n"
            f"  planned: {_counts_line(row)}\n"
        )
        if row["read_time"]:
            yield f"  read as of: {row['read_time']}\n"
        if row["archive_policy"] not in (None, "full"):
            yield f"  archive: {archive.describe(row)}\n"
        if not dry:
            yield (
                f"  committed {row['committed']:,}, skipped {row['skipped']:,}, "
                f"failed {row['failed']:,}, in {plural(row['batches'], 'batch', 'batches')}\n"
            )
        limit = None if full else TEXT_SAMPLE
        shown = 0
        for op in state.ops(row["id"], limit=limit):
            shown += 1
            label = f"  ({op['label']})" if op["label"] else ""
            yield f"    {op['kind']:<7} {op['path']}{label}\n"
        if not full and row["planned"] > shown:
            yield (
                f"    ... and {row['planned'] - shown:,} more "
                "(all of them: --report FILE, or --format json)\n"
            )
        yield from _capped(
            (
                f"  skipped {op['kind']} {op['path']}: {op['reason']}\n"
                for op in state.ops(row["id"], status="skipped")
            ),
            full,
            "skipped operations",
        )
        notes = _problems_first(state, row["id"])
        yield from _capped((f"  note: {note}\n" for note in notes), full, "notes")
        if row["error"]:
            yield f"  {_error_label(row)}: {row['error']}\n"
        if row["retries"]:
            yield (
                f"  retried {plural(row['retries'], 'time')}; "
                f"last error: {row['last_retry_error']}\n"
            )
        yield from _usage_lines(state, row)
    total = _usage_total(state, runs)
    if total is not None:
        word = "estimate" if dry else "did"
        yield f"\nTotal {word}: {estimate.describe(total)}\n"
    if dry and len(runs) > 1:
        yield (
            "\nNote: each migration was planned against the current data; later ones do not "
            "see the changes earlier ones would make.\n"
        )
    step = outcome.next_step(runs)
    if step:
        yield f"\n{step}\n"


def _capped(lines: Iterator[str], full: bool, what: str) -> Iterator[str]:
    """The first NOTES_SHOWN lines, then how many more (all of them when `full`)."""
    more = 0
    for i, line in enumerate(lines):
        if full or i < NOTES_SHOWN:
            yield line
        else:
            more += 1
    if more:
        yield f"  ... and {more:,} more {what} (all of them: --report FILE, or --format json)\n"


def _upgrade_markdown(
    state: Any, runs: Sequence[sqlite3.Row], target: Any, outcome: Outcome
) -> Iterator[str]:
    word = outcome.word(runs)
    title = "dry-run" if outcome.dry_run else outcome.command
    ended = f"{_HEADS[word]}: " if word in _ENDED else ""  # `# STOPPED: fsmigrate upgrade report`
    yield f"# {ended}fsmigrate {title} report\n\n"
    yield f"- Target: {text(target.describe())}\n"
    yield f"- Outcome: {bold(word)}\n"
    if outcome.error is not None:
        label = "Stopped" if word == "stopped" else "Error"
        yield f"- {label}: {text(str(outcome.error) or type(outcome.error).__name__)}\n"
    if not runs:
        if word == "nothing to do":
            yield "\nNothing to do: up to date.\n"
        return
    first = runs[0]
    yield (
        "- "
        + md(
            "Operator: {} on {}, fsmigrate {}",
            first["operator"],
            code(first["host"]),
            code(first["tool_version"]),
        )
        + "\n"
    )
    yield f"- Started: {text(first['started_at'])}\n"
    traffic, _ = state.usage(first)
    if traffic:
        yield f"- Traffic: {text(Limits.from_json(traffic).describe())}\n"
    total = _usage_total(state, runs)
    if total is not None:
        yield (
            f"- Total {'estimate' if outcome.dry_run else 'done'}: "
            f"{text(estimate.describe(total))}\n"
        )
    yield "\n"
    for row in runs:
        yield "## " + text(f"{row['revision']} {row['description']}".splitlines()[0]) + "\n\n"
        yield md(
            "Run {}, status {}, checksum {}\n\n",
            code(row["id"]),
            bold(row["status"]),
            code(row["checksum"]),
        )
        if row["read_time"]:
            yield f"Read as of {text(row['read_time'])} (every read of the plan).\n\n"
        yield f"Archive: {text(archive.describe(row))}.\n\n"
        yield from _usage_table(state, row)
        yield "| operation | planned |\n|---|---|\n"
        counts = json.loads(row["counts"] or "{}")
        for kind in KINDS:
            yield f"| {kind} | {counts.get(kind, 0)} |\n"
        if row["mode"] == "apply":
            yield (
                f"\nCommitted {row['committed']:,}, skipped {row['skipped']:,}, "
                f"failed {row['failed']:,}, in {plural(row['batches'], 'batch', 'batches')}.\n"
            )
        if state.note_count(row["id"]):
            yield "\n### Notes\n\n"
            yield from (f"- {text(n)}\n" for n in _problems_first(state, row["id"]))
        labelled = state.renamed(row["id"])
        heading_due = True
        for op in labelled:
            if heading_due:
                yield "\n### Old ID -> new ID (by new ID)\n\n| document | status |\n|---|---|\n"
                heading_due = False
            status = op["status"] + (f" ({op['reason']})" if op["reason"] else "")
            yield md_row([code(op["label"]), status])
        if row["error"]:
            label = _error_label(row).capitalize() + ":"
            yield "\n" + md("{} {}", bold(label), row["error"]) + "\n"
        yield "\n### Documents\n\n" + header(["#", "operation", "document", "status"])
        for op in state.ops(row["id"]):
            status = op["status"] + (f" ({op['reason']})" if op["reason"] else "")
            yield md_row([op["seq"], op["kind"], code(op["path"]), status])
        yield "\n"


def _usage_lines(state: Any, row: sqlite3.Row) -> Iterator[str]:
    """A run's estimate (dry-run) or what it did (apply), and its traffic."""
    traffic, figures = state.usage(row)
    if figures is not None:
        word = "estimate" if row["mode"] == "dry-run" else "did"
        yield f"  {word}: {estimate.describe(figures)}\n"
    if traffic is not None and Limits.from_json(traffic).active:  # none: the emulator's
        yield f"  traffic: {describe_stats(traffic)}\n"


def _usage_table(state: Any, row: sqlite3.Row) -> Iterator[str]:
    traffic, figures = state.usage(row)
    if figures is not None:
        head = "Estimate" if row["mode"] == "dry-run" else "Done"
        seconds = figures.get("seconds_at_ramp")
        yield (
            f"| {head} | reads | writes | deletes | archive bytes | seconds at the rate "
            f"limits |\n|---|---|---|---|---|---|\n| | {figures['reads']} | "
            f"{figures['writes']} | {figures['deletes']} | {figures['archive_bytes']} | "
            f"{'unlimited' if seconds is None else seconds} |\n\n"
        )
    if traffic is not None and row["mode"] == "apply":
        yield f"Traffic: {describe_stats(traffic)}.\n\n"


def _usage_total(state: Any, runs: Sequence[sqlite3.Row]) -> Optional[dict[str, Any]]:
    """The runs' figures summed, the time at the limits of the first run (one command)."""
    used = [state.usage(row) for row in runs]
    figures = [f for _, f in used if f is not None]
    if not figures:
        return None
    traffic = next((t for t, _ in used if t is not None), None)
    return estimate.total(figures, Limits.from_json(traffic) if traffic else None)


def _upgrade_json(
    state: Any, runs: Sequence[sqlite3.Row], target: Any, outcome: Outcome
) -> Iterator[str]:
    total = _usage_total(state, runs)
    head = envelope(
        outcome.command,
        {
            "command": outcome.command,
            "project": target.project if target else None,
            "database": target.database if target else None,
            "emulator": target.is_emulator if target else None,
            "mode": "dry-run" if outcome.dry_run else "apply",
            "outcome": outcome.word(runs),
            "estimate": total if outcome.dry_run else None,
            "actual": None if outcome.dry_run else total,
            "plan": outcome.plan,
            "warnings": list(outcome.warnings),
        },
        exit_code=outcome.exit_code,
        error=outcome.error,
    )
    del head["migrations"]
    yield dumps(head)[:-1] + ', "migrations": ['
    for i, row in enumerate(runs):
        run = run_dict(state, row, notes=False)  # its notes and operations streamed
        yield ("," if i else "") + dumps(run)[:-1] + ', "notes": ['
        for j, note in enumerate(state.iter_notes(row["id"])):
            yield ("," if j else "") + dumps(note)
        yield '], "operations": ['
        for j, op in enumerate(state.ops(row["id"])):
            yield ("," if j else "") + dumps(op_dict(op))
        yield "]}"
    yield "]}\n"


# ---- history / audit / status --------------------------------------------------------


WIDTH = 100  # text tables fit this many columns (or a wider terminal's: `width`)


def _fit(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def runs_chunks(
    runs: Sequence[dict[str, Any]],
    fmt: str,
    *,
    command: str = "history",
    target: Any = None,
    width: int = WIDTH,
) -> Iterator[str]:
    """Runs (as `run_dict` gives them) as text, json (the `history` or `audit` shape) or
    jsonl (one run a line). Text: one line per run, within `width` columns; the run id
    starts with its start time; the last column is who ran it (history, one target) or
    the target (audit, every target)."""
    if fmt == "jsonl":
        for r in runs:
            yield dumps(r) + "\n"
        return
    if fmt == "json":
        body: dict[str, Any] = {"runs": list(runs)}
        if command == "history" and target is not None:
            body.update(project=target.project, database=target.database)
        yield dumps(envelope(command, body)) + "\n"
        return
    if not runs:
        yield "No runs recorded.\n"
        return
    last = "BY" if command == "history" else "TARGET"
    yield (
        _fit(
            f"{'RUN':<23} {'REV':<5} {'KIND':<9} {'MODE':<7} {'STATUS':<11} {'PLANNED':>7} "
            f"{'DONE':>7}  {last}",
            width,
        )
        + "\n"
    )
    for r in runs:
        who = (
            f"{r['operator']}@{r['host']}"
            if command == "history"
            else f"{r['project']}/{r['database']}"
        )
        yield (
            _fit(
                f"{r['run_id']:<23} {r['revision']:<5} {r['kind']:<9} {r['mode']:<7} "
                f"{r['status']:<11} {r['planned']:>7,} {r['committed']:>7,}  {who}",
                width,
            )
            + "\n"
        )


def audit_run_chunks(state: Any, run_id: str, fmt: str) -> Iterator[str]:
    row = state.run(run_id)
    if fmt == "jsonl":
        for op in state.ops(run_id):
            yield dumps(op_dict(op, images=True)) + "\n"
        return
    if fmt == "json":
        run = run_dict(state, row)
        yield dumps(run)[:-1] + ', "operations": ['
        for i, op in enumerate(state.ops(run_id)):
            yield ("," if i else "") + dumps(op_dict(op, images=True))
        yield "]}\n"
        return
    yield (
        f"run {row['id']}: {row['kind']} {row['mode']} of {row['revision']} {row['description']} "
        f"on {row['project']}/{row['database']}, {row['status']}\n"
        f"  by {row['operator']}@{row['host']}, fsmigrate {row['tool_version']}, "
        f"{row['started_at']} .. {row['finished_at'] or '(unfinished)'}\n"
        f"  planned {row['planned']:,}, committed {row['committed']:,}, "
        f"skipped {row['skipped']:,}, failed {row['failed']:,}, "
        f"in {plural(row['batches'], 'batch', 'batches')}\n"
    )
    if row["read_time"]:
        yield f"  read as of {row['read_time']}\n"
    if row["plan_digest"]:
        what = "applies plan" if row["mode"] == "apply" else "wrote plan"
        yield f"  {what} {row['source'] or row['invocation']}, sha256 {row['plan_digest']}\n"
    if row["resumes"]:
        yield f"  resumes run {row['resumes']}\n"
    if row["planned"] or row["pruned_at"]:
        yield f"  archive: {archive.describe(row)}\n"
    if row["planned"] and not state.kept_ops(run_id):
        yield ("  operations: not kept (a dry-run without --plan-out keeps its counts and notes)\n")
    if row["error"]:
        yield f"  {_error_label(row)}: {row['error']}\n"
    if row["retries"]:
        yield (
            f"  retried {plural(row['retries'], 'time')}; last error: {row['last_retry_error']}\n"
        )
    yield from _usage_lines(state, row)
    for note in state.iter_notes(run_id):
        yield f"  note: {note}\n"
    yield f"{'#':>6} {'BATCH':>5} {'OP':<7} {'STATUS':<10} DOCUMENT\n"
    for op in state.ops(run_id):
        extra = f"  ({op['reason'] or op['error']})" if (op["reason"] or op["error"]) else ""
        yield f"{op['seq']:>6} {op['batch']:>5} {op['kind']:<7} {op['status']:<10} {op['path']}{extra}\n"
    yield ("Before-images: fsmigrate audit " + run_id + " --format jsonl\n")


def status_chunks(report: Any, fmt: str, width: int = WIDTH) -> Iterator[str]:
    """`api.StatusReport` as text (one line per revision, within `width` columns) or json,
    with the run holding the lock (`running`, the JSON of `api.RunningRun`) when there is
    one."""
    rows = [r.to_json() for r in report.revisions]
    target = report.target
    running = report.running.to_json() if report.running is not None else None
    if fmt == "json":
        body = {
            "project": target.project,
            "database": target.database,
            "markers_read": report.markers_read,
            "revisions": rows,
            "running": running,
            "unimported_journals": [j.to_json() for j in report.unimported],
        }
        yield dumps(envelope("status", body)) + "\n"
        return
    yield f"{target.describe()}\n"
    for journal in report.unimported:
        yield f"WARNING: {journal.message()}\n"
    if not rows:
        yield "No migrations.\n"
        return
    yield f"  {'REV':<6} {'STATE':<24} {'APPLIED AT':<20}  DESCRIPTION\n"
    for r in rows:
        when = _seconds(r["applied_at"]) if r["applied_at"] else ""
        state = r["state"]
        if state in ("failed", "interrupted", "running"):
            when = f"run {r['run_id']}"[:20]
        line = f"  {r['revision']:<6} {state:<24} {when:<20}  {r['description']}"
        yield _fit(line, width) + "\n"

    if running is not None:
        yield running_line(running)


def _seconds(when: str) -> str:
    """An RFC 3339 time to the second (`2026-12-02T03:06:00Z`), for tables."""
    head, _, _ = when.partition(".")
    return head + "Z" if not head.endswith("Z") else head


def running_line(r: dict[str, Any]) -> str:
    """One run holding the lock, for people."""
    text = f"RUNNING: {r['command']} by {r['holder']}"
    if r.get("run_id"):
        text += (
            f"\n  run {r['run_id']}: migration {r['revision']} ({r['mode']}), "
            f"{r['operations'] or 0:,} operation(s) in {r['batches'] or 0:,} batch(es)"
        )
        rate = r.get("rate")
        text += f", limit {rate:,.0f} ops/s" if rate else ", no rate limit"
        if r.get("updated_at"):
            text += f" (as of {r['updated_at']})"
    if r.get("stale"):
        text += f"\n  STALE: {r['stale']}; the next command that writes takes the lock over"
    if r.get("stopping"):
        text += f"\n  STOPPING: {r['stopping']}"
    elif r.get("paused"):
        seen = "the run has paused" if r.get("paused_seen") else "not yet taken by the run"
        text += f"\n  PAUSED ({seen}); `fsmigrate control resume` lets it go on"
    if r.get("requested_rate") is not None:
        text += f"\n  rate set to {r['requested_rate']:g} ops/s by `fsmigrate control rate`"
    return text + "\n"


def findings_chunks(findings: Sequence[dict[str, Any]], fmt: str) -> Iterator[str]:
    blocking = [f for f in findings if f.get("blocking", True)]
    if fmt == "json":
        error = None
        if blocking:
            drift = [f for f in blocking if f["problem"] != "unimported journal"]
            error = {
                "type": "DriftFound" if drift else "UnimportedJournal",
                "message": f"{plural(len(drift), 'applied migration')} differ from the "
                "scripts (see findings)"
                if drift
                else f"{plural(len(blocking), 'Beam journal')} not imported (see findings)",
            }
        yield (
            dumps(
                envelope(
                    "verify",
                    {"findings": list(findings)},
                    exit_code=1 if blocking else 0,
                    error=error,
                )
            )
            + "\n"
        )
        return
    if not findings:
        yield "OK: every applied migration matches its script.\n"
    for f in findings:
        yield f"{f['problem'].upper()}: {f['message']}\n"


def prune_chunks(result: Any, fmt: str) -> Iterator[str]:
    """A prune (`fsmigrate.state.prune.PruneResult`) as text or json."""
    if fmt == "json":
        yield dumps(envelope("prune", result.to_json())) + "\n"
        return
    images = sum(p.before_images for p in result.pruned)
    if not result.pruned:
        yield f"Nothing to prune: no run finished before {result.cutoff} holds archive data.\n"
    elif result.dry_run:
        yield (
            f"DRY-RUN: would prune {plural(len(result.pruned), 'run')} finished before "
            f"{result.cutoff} ({images:,} before-images); nothing was changed\n"
        )
    else:
        yield (
            f"PRUNED by run {result.run_id}: {plural(len(result.pruned), 'run')} finished before "
            f"{result.cutoff}, {images:,} before-images; state file {result.bytes_before:,} "
            f"-> {result.bytes_after:,} bytes\n"
        )
    for p in result.pruned:
        yield (
            f"  {p.run_id}  {p.kind} {p.mode} of {p.revision}, finished {p.finished_at}: "
            f"{p.before_images:,} before-images, {p.writes:,} writes, {p.bytes:,} bytes\n"
        )
    for k in result.kept:
        yield f"  kept {k.run_id}: {k.why}\n"
    if result.dry_run and result.pruned:
        yield "\nTo prune: the same command without --dry-run\n"
