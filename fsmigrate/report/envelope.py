"""The one JSON shape of each command's `--format json` output (docs/json-output.md).

Every command's object has `ok`, `exit_code` and `error`, then the keys of its shape, each
always present (`null` or empty when it does not apply), on success, with nothing to do,
on a refusal and on a failure. So a script needs only stdout and the exit code:

    {"ok": false, "exit_code": 3, "error": {"type": "LockHeld", "message": "..."}, ...}

`ok` is true exactly when `exit_code` is 0, and then `error` is null.
"""

from __future__ import annotations

from typing import Any, Optional

# the keys of a writing command's result (upgrade, rerun, apply, restore)
_RUNS: dict[str, Any] = {
    "command": None,  # "upgrade", "rerun", "apply", "restore"
    "project": None,
    "database": None,
    "emulator": None,
    "mode": None,  # "dry-run" or "apply": what was asked, whether or not a run was made
    "outcome": None,  # "applied", "planned", "nothing to do", "failed", "stopped",
    # "interrupted", "refused"
    "estimate": None,  # a dry-run's figures summed over its migrations
    "actual": None,  # an apply's figures summed
    "plan": None,  # a written plan file (--plan-out): path, plan_id, operations, sha256
    "warnings": [],
    "migrations": [],  # one run record each, with its "operations"
}

SHAPES: dict[str, dict[str, Any]] = {
    "upgrade": _RUNS,
    "rerun": _RUNS,
    "apply": _RUNS,
    "restore": _RUNS,
    "status": {
        "project": None,
        "database": None,
        "markers_read": None,
        "revisions": [],
        "running": None,  # the run holding the lock (fsmigrate control), when there is one
        "unimported_journals": [],  # Beam journals of dead coordinators (fsmigrate.beam.journal)
    },
    "verify": {"findings": []},
    "doctor": {
        "project": None,
        "database": None,
        "emulator": None,
        "endpoint": None,  # the API endpoint when not the default one
        "principal": None,  # kind, email, source
        "checks": [],  # name, status (ok/warn/fail/skip), detail, next
        "counts": None,  # checks by status
    },
    "history": {"project": None, "database": None, "runs": []},
    "audit": {"runs": []},  # the list of runs (audit RUN_ID prints the run record itself)
    "prune": {
        "cutoff": None,
        "dry_run": None,
        "run_id": None,
        "pruned": [],
        "kept": [],
        "bytes_before": None,
        "bytes_after": None,
        "warnings": [],
    },
}

COMMON = ("ok", "exit_code", "error")


def error_dict(error: Optional[BaseException], message: Optional[str] = None) -> Any:
    """`{"type": ..., "message": ...}` of an exception, or None."""
    if error is None:
        return None
    return {"type": type(error).__name__, "message": message or str(error) or type(error).__name__}


def envelope(
    command: str,
    body: dict[str, Any],
    *,
    exit_code: int = 0,
    error: Any = None,
) -> dict[str, Any]:
    """`body` in `command`'s shape: every key of the shape present (defaults for the ones
    `body` lacks), `ok`, `exit_code` and `error` first. A key outside the shape is a bug."""
    shape = SHAPES[command]
    extra = set(body) - set(shape)
    if extra:
        raise ValueError(f"keys outside the {command} JSON shape: {sorted(extra)}")
    if isinstance(error, BaseException):
        error = error_dict(error)
    out: dict[str, Any] = {"ok": exit_code == 0, "exit_code": exit_code, "error": error}
    for key, default in shape.items():
        value = body.get(key, default)
        out[key] = list(value) if isinstance(value, list) and key not in body else value
    return out
