"""`fsmigrate doctor`'s report: one line per check (ok / warn / fail / skip) with its next
step, as text or as the command's JSON object (docs/reference/json-output.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fsmigrate.engine.doctor import FAIL, DoctorReport
from fsmigrate.report.envelope import envelope
from fsmigrate.report.runs import dumps

_WIDTH = max(len(n) for n in ("point-in-time recovery", "delete protection"))


def where(report: DoctorReport) -> str:
    target = report.target
    if target.is_emulator:
        place = f"emulator {target.emulator_host}"
    else:
        place = f"Google Cloud, endpoint {report.endpoint}" if report.endpoint else "Google Cloud"
    return f"project {target.project}, database {target.database} ({place})"


def summary(report: DoctorReport) -> str:
    counts = report.counts()
    figures = ", ".join(f"{n} {status}" for status, n in counts.items())
    if not report.ok:
        return (
            f"{figures}: a run would fail here; fix each check marked fail, then run doctor again"
        )
    if counts["warn"]:
        return f"{figures}: nothing here stops a run; read each warning before the first apply"
    return f"{figures}: ready"


def text(report: DoctorReport) -> str:
    width = max([_WIDTH, *(len(c.name) for c in report.checks)])
    lines = [
        f"target:    {where(report)}",
        f"acting as: {report.principal.describe()}",
        "",
    ]
    for check in report.checks:
        lines.append(f"{check.status:<5} {check.name:<{width}}  {check.detail}")
        if check.next_step and check.status != "ok":
            lines.append(f"{'':<5} {'':<{width}}  next: {check.next_step}")
    lines += ["", summary(report)]
    return "\n".join(lines) + "\n"


def as_json(report: DoctorReport) -> dict[str, Any]:
    """The command's JSON object: a failed check makes it `ok: false`, exit code 1, with
    an error naming the failed checks."""
    target = report.target
    failed = [c.name for c in report.checks if c.status == FAIL]
    error = (
        {"type": "DoctorFailed", "message": f"{len(failed)} failed: {', '.join(failed)}"}
        if failed
        else None
    )
    return envelope(
        "doctor",
        {
            "project": target.project,
            "database": target.database,
            "emulator": target.emulator_host,
            "endpoint": report.endpoint,
            "principal": report.principal.to_json(),
            "checks": [c.to_json() for c in report.checks],
            "counts": report.counts(),
        },
        exit_code=0 if report.ok else 1,
        error=error,
    )


def chunks(report: DoctorReport, fmt: str) -> Iterator[str]:
    """The report as text, or as its JSON object on one line."""
    yield dumps(as_json(report)) + "\n" if fmt == "json" else text(report)
