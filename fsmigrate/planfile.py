"""Reviewed plans: a dry-run written to a file, applied later exactly as reviewed.

The file is JSON lines, written and read as a stream (a plan of 100,000 operations never
sits in memory). Line 1 is the header: format version, plan id (the dry-run's invocation),
target project and database, who made it and when, and per migration its revision,
checksum, description and dry-run run id. Every other line is one operation: revision,
sequence, kind, path, precondition, the exact `Write` protobuf (base64) that will be sent,
and the before-image (base64 `Document` protobuf) that will be archived.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import UsageError
from .plan import Archived, Operation, Precondition
from .state import now_text, operator_name

FORMAT = "fsmigrate-plan/1"


def _b64(raw: Optional[bytes]) -> Optional[str]:
    return base64.b64encode(raw).decode() if raw is not None else None


def _unb64(text: Optional[str]) -> Optional[bytes]:
    return base64.b64decode(text) if text is not None else None


def write_plan(state: Any, run_ids: list[str], target: Any, invocation: str) -> Iterator[str]:
    """The plan file's lines for the dry-run runs `run_ids` (streamed from the state file)."""
    runs = [state.run(r) for r in run_ids]
    header = {"format": FORMAT, "plan_id": invocation, "project": target.project,
              "database": target.database, "created_at": now_text(),
              "created_by": operator_name(),
              "migrations": [{"revision": r["revision"], "checksum": r["checksum"],
                              "description": r["description"], "dry_run": r["id"],
                              "operations": r["planned"]} for r in runs]}
    yield json.dumps(header, sort_keys=True) + "\n"
    for run in runs:
        for row in state.ops(run["id"]):
            if row["write"] is None:
                raise UsageError(f"run {run['id']} was not planned with --plan-out")
            yield json.dumps({
                "revision": run["revision"], "seq": row["seq"], "kind": row["kind"],
                "path": row["path"],
                "precondition": json.loads(row["precondition"]) if row["precondition"]
                else None,
                "write": _b64(row["write"]), "before": _b64(row["before"])},
                sort_keys=True) + "\n"


class PlanFile:
    """A plan file opened for applying: its header, and its operations per revision."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open(encoding="utf-8") as fh:
                self.header = json.loads(fh.readline())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} is not a readable plan file: {exc}") from exc
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            raise UsageError(f"{path} is not an fsmigrate plan ({FORMAT}); make one with "
                             "`fsmigrate upgrade --dry-run --plan-out FILE`")

    @property
    def plan_id(self) -> str:
        return self.header["plan_id"]

    def operations(self, revision: str) -> Iterator[Operation]:
        """The operations of `revision`, read line by line."""
        with self.path.open(encoding="utf-8") as fh:
            fh.readline()
            for number, line in enumerate(fh, 2):
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise UsageError(f"{self.path}:{number}: not JSON: {exc}") from exc
                if item.get("revision") != revision:
                    continue
                pre = Precondition.from_json(json.dumps(item["precondition"])
                                             if item.get("precondition") else None)
                yield Operation(item["kind"], item["path"], precondition=pre,
                                before=Archived(item["path"], _unb64(item.get("before"))),
                                write=_unb64(item["write"]))
