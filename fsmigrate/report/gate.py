"""Output of `status --check` (text, json, a pull-request comment in markdown), of
`config` and of `rebase`. Takes the api's results duck-typed (no import of the api)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fsmigrate.report import mdsafe
from fsmigrate.report.runs import dumps

COUNT_KINDS = ("update", "set", "create", "delete")


def chunks(gate: Any, fmt: str) -> Iterator[str]:
    """A `CheckReport` as text, json or markdown."""
    if fmt == "json":
        yield dumps(gate.to_json()) + "\n"
        return
    if fmt == "markdown":
        yield from _markdown(gate)
        return
    env = f" [environment {gate.environment}]" if gate.environment else ""
    yield f"{gate.target.describe()}{env}\n"
    if gate.status is not None:
        for r in gate.status.revisions:
            yield f"  {r.revision:<6} {r.state:<26} {r.description}\n"
    for rev, run in gate.plans.items():
        yield f"  dry-run {rev}: {_counts_text(run)} (run {run.run_id})\n"
    yield ("OK: up to date\n" if gate.ok else f"NOT OK: {len(gate.reasons)} reason(s)\n")


def _counts_text(run: Any) -> str:
    parts = [f"{run.counts.get(k, 0):,} {k}" for k in COUNT_KINDS if run.counts.get(k)]
    return ", ".join(parts) or "no writes"


def _markdown(gate: Any) -> Iterator[str]:
    md, code = mdsafe.md, mdsafe.code
    env = md(" (environment {})", code(gate.environment)) if gate.environment else ""
    verdict = "up to date" if gate.ok else "not up to date"
    yield md(
        "### fsmigrate: {} {}{}\n\n",
        mdsafe.bold(verdict),
        md("project {}, database {}", code(gate.target.project), code(gate.target.database)),
        mdsafe.Md(env),
    )
    if gate.reasons:
        for reason in gate.reasons:
            yield md("- {}\n", reason)
        yield "\n"
    pending = gate.pending
    if pending:
        yield md("**{} pending migration(s)**\n\n", len(pending))
        planned = bool(gate.plans)
        names = ["revision", "description"]
        if planned:
            names += [*COUNT_KINDS, "dry-run"]
        yield mdsafe.header(names)
        for r in pending:
            cells: list[Any] = [code(r.revision), r.description]
            if planned:
                run = gate.plans.get(r.revision)
                counts = run.counts if run is not None else {}
                cells += [f"{counts.get(k, 0):,}" for k in COUNT_KINDS]
                cells.append(code(run.run_id) if run is not None else "not planned")
            yield mdsafe.row(cells)
        yield "\n"
    other = [
        r for r in (gate.status.revisions if gate.status else []) if r.state not in ("pending",)
    ]
    if other:
        yield md("<details><summary>{} other revision(s)</summary>\n\n", len(other))
        yield mdsafe.header(["revision", "state", "description"])
        for r in other:
            yield mdsafe.row([code(r.revision), r.state, r.description])
        yield "\n</details>\n"


def config_chunks(settings: Any, fmt: str) -> Iterator[str]:
    """Resolved `Settings` with each value's source."""
    if fmt == "json":
        yield dumps(settings.to_json()) + "\n"
        return
    yield f"config file: {settings.file or '(none)'}\n"
    if settings.environment:
        yield f"environment: {settings.environment} (from {settings.environment_source})\n"
    else:
        yield "environment: (none)\n"
    if settings.environments:
        yield f"environments: {', '.join(settings.environments)}\n"
    width = max(len(k) for k in settings.values)
    for name, setting in settings.values.items():
        value = "(unset)" if setting.value is None else setting.value
        if isinstance(value, bool):
            value = str(value).lower()
        yield f"  {name:<{width}}  {value!s:<30}  {setting.source}\n"


def rebase_chunks(done: Any, fmt: str) -> Iterator[str]:
    """What `rebase` moved."""
    if fmt == "json":
        yield dumps(done.to_json()) + "\n"
        return
    verb = "would move" if done.dry_run else "moved"
    yield f"{verb} {len(done.moves)} migration(s) on top of {done.head}:\n"
    for m in done.moves:
        yield (
            f"  {m.old.name} -> {m.new.name} (revision {m.revision} -> {m.new_revision}, "
            f"down_revision {m.down_revision} -> {m.new_down_revision})\n"
        )
    yield f"checked not applied in: {', '.join(done.looked) or 'nothing (no state file)'}\n"
