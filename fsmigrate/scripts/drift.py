"""What the commands decide, without click: status rows, verify findings, marker
adoption, plan checks. The CLI parses options, calls these, and prints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

from fsmigrate.errors import NEW_PLAN, PlanRefused, ScriptsChanged, UsageError
from fsmigrate.scripts.loader import Chain, Script
from fsmigrate.scripts.planfile import PlanFile
from fsmigrate.times import rfc3339


def _when(value: Any) -> Optional[str]:
    """A marker's time as the state file writes times (RFC 3339, UTC, Z)."""
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    return None if value is None else str(value)


def status_rows(
    chain: Chain,
    applied: Mapping[str, Any],
    markers: Optional[dict[str, dict[str, Any]]],
    unfinished: Optional[Mapping[str, Any]] = None,
) -> list[dict[str, Any]]:
    """One row per revision: applied, applied elsewhere, pending, failed / interrupted
    (its last apply did not finish: `unfinished`, revision -> run row), or applied but
    changed, missing, or without a marker (markers None: not read)."""
    rows = []
    for s in chain:
        row, marker = applied.get(s.revision), (markers or {}).get(s.revision)
        checksum = row["checksum"] if row else marker["checksum"] if marker else None
        last = (unfinished or {}).get(s.revision)
        if row is None and marker is None and last is not None:
            rows.append(
                {
                    "revision": s.revision,
                    "description": s.description,
                    "state": last["status"],  # failed / interrupted / running
                    "applied_at": None,
                    "run_id": last["id"],
                }
            )
            continue
        if row is None and marker is None:
            label = "pending"
        elif checksum != s.checksum and not s.repeatable and _other_script(s, row or marker):
            label = DIFFERENT_LABEL
        elif checksum != s.checksum:
            label = "applied (script changed)"
        elif row is None:
            label = "applied elsewhere"
        elif markers is not None and marker is None:
            label = "applied (no marker)"
        else:
            label = "applied"
        when = row["applied_at"] if row else marker and _when(marker.get("applied_at"))
        rows.append(
            {
                "revision": s.revision,
                "description": s.description,
                "state": label,
                "applied_at": when or None,
                "run_id": row["run_id"] if row else marker and marker.get("run_id"),
            }
        )
    for rev in sorted(set(applied) | set(markers or {})):
        if rev not in chain:
            row, marker = applied.get(rev), (markers or {}).get(rev, {})
            rows.append(
                {
                    "revision": rev,
                    "description": "(script missing)",
                    "state": "applied (missing)",
                    "applied_at": row["applied_at"] if row else _when(marker.get("applied_at")),
                    "run_id": row["run_id"] if row else marker.get("run_id"),
                }
            )
    return rows


def findings(
    chain: Chain,
    local: Mapping[str, Any],
    markers: Optional[dict[str, dict[str, Any]]],
    *,
    migrations: Path,
    state_path: Path,
) -> list[dict[str, Any]]:
    """Applied scripts that changed or vanished since, per the state file (`local`: its
    applied rows) and, when given, the markers; and local records without a marker."""
    found: list[dict[str, Any]] = []
    for rev, marker in sorted((markers or {}).items()):
        if rev in chain and chain.get(rev).checksum != marker.get("checksum"):
            script = chain.get(rev)
            if _other_script(script, marker) and not script.repeatable:
                where = (
                    f"the database (marker, run {marker.get('run_id')} by "
                    f"{marker.get('operator')}@{marker.get('host')})"
                )
                found.append(_different(script, marker, where))
                continue
            if script.repeatable:
                found.append(_repeatable_changed(script, marker.get("checksum")))
                continue
            found.append(
                {
                    "revision": rev,
                    "problem": "changed",
                    "message": f"revision {rev} ({script.path}) was edited after it was applied to the "
                    f"database by {marker.get('operator')}@{marker.get('host')} (run "
                    f"{marker.get('run_id')}; checksum {str(marker.get('checksum'))[:12]}.. != "
                    f"{script.checksum[:12]}..); restore the applied version, and make further "
                    "changes a new migration",
                    "applied_checksum": marker.get("checksum"),
                    "script_checksum": script.checksum,
                }
            )
        elif rev not in chain:
            found.append(
                {
                    "revision": rev,
                    "problem": "missing",
                    "message": f"revision {rev} is applied to the database (marker, run "
                    f"{marker.get('run_id')}) but its script is not in "
                    f"{migrations}",
                }
            )
    if markers is not None:
        for rev in sorted(set(local) - set(markers)):
            found.append(
                {
                    "revision": rev,
                    "problem": "no marker",
                    "message": f"revision {rev} is applied in {state_path} (run "
                    f"{local[rev]['run_id']}) but the database has no marker for it; "
                    f"if it is applied there, `fsmigrate stamp {rev} --reason ...`",
                }
            )
    for rev, row in local.items():
        if markers is not None and rev in markers:
            continue  # judged by the marker above
        if rev not in chain:
            found.append(
                {
                    "revision": rev,
                    "problem": "missing",
                    "message": f"revision {rev} was applied (run {row['run_id']}) but its script "
                    f"is no longer in {migrations}",
                }
            )
            continue
        script = chain.get(rev)
        if (
            script.checksum != row["checksum"]
            and _other_script(script, row)
            and not script.repeatable
        ):
            found.append(_different(script, row, f"{state_path} (run {row['run_id']})"))
        elif script.checksum != row["checksum"] and script.repeatable:
            found.append(_repeatable_changed(script, row["checksum"]))
        elif script.checksum != row["checksum"]:
            found.append(
                {
                    "revision": rev,
                    "problem": "changed",
                    "message": f"revision {rev} ({script.path}) was edited after it was applied "
                    f"(checksum {row['checksum'][:12]}.. != {script.checksum[:12]}..); "
                    "restore the applied version, and make further changes a new "
                    "migration",
                    "applied_checksum": row["checksum"],
                    "script_checksum": script.checksum,
                }
            )
    return found


REPEATABLE_CHANGED = "changed (repeatable)"
DIFFERENT = "different script"
DIFFERENT_LABEL = "applied (different script)"


def _description(record: Any) -> Optional[str]:
    """The description an applied record (a marker, a state row) keeps, if it keeps one."""
    try:
        value = record["description"]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) and value else None


def _other_script(script: Script, record: Any) -> bool:
    """True when the revision applied there is another script than `script` (another
    branch's migration of the same number), not an edit of it: its description differs.
    Records without a description (older markers) are judged as edits."""
    applied = _description(record)
    return applied is not None and applied != script.description


def _different(script: Script, record: Any, where: str) -> dict[str, Any]:
    """A target that applied another script under this revision: never treated as
    applied, every writing command refuses, and the message says the way out."""
    return {
        "revision": script.revision,
        "problem": DIFFERENT,
        "message": f"revision {script.revision} applied per {where} is another script "
        f"({_description(record)!r}, checksum {str(record['checksum'])[:12]}..), not "
        f"{script.path.name} ({script.description!r}, {script.checksum[:12]}..): another "
        f"branch's migration {script.revision} was applied there. Bring that script back "
        f"(merge its branch) and move this branch's on top of it with `fsmigrate rebase "
        f"{script.path.name}`; if this script was edited instead, restore the applied version",
        "applied_checksum": record["checksum"],
        "script_checksum": script.checksum,
    }


def _repeatable_changed(script: Script, applied: Any) -> dict[str, Any]:
    """A repeatable script edited since it was last applied is not drift: like a
    repeatable migration elsewhere, its next run applies and records the new version."""
    return {
        "revision": script.revision,
        "problem": REPEATABLE_CHANGED,
        "blocking": False,
        "message": f"revision {script.revision} ({script.path}) is repeatable and changed "
        f"since it was last applied (checksum {str(applied)[:12]}.. != "
        f"{script.checksum[:12]}..); its next run (`fsmigrate rerun "
        f"{script.revision}`) applies and records this version",
        "applied_checksum": applied,
        "script_checksum": script.checksum,
    }


def blocking(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings that stop an upgrade (all but a repeatable script's new version)."""
    return [f for f in found if f.get("blocking", True)]


def plan_scripts(
    plan: PlanFile, target: Any, chain: Chain, state: Any
) -> Callable[[], list[Script]]:
    """Check a reviewed plan against the target and the scripts on disk; return what
    selects the migrations of it still to apply (each replaying its planned operations)."""
    header = plan.header
    if (header["project"], header["database"]) != (target.project, target.database):
        raise PlanRefused(
            plan.path,
            f"a plan for {header['project']}/{header['database']}, not "
            f"{target.project}/{target.database}",
            f"apply it with --project {header['project']} --database {header['database']}",
        )
    if plan.digest is None:
        raise UsageError(f"{plan.path}: verify the plan before applying it")
    for item in header["migrations"]:
        script = chain.get(item["revision"])
        if script.checksum != item["checksum"]:
            raise ScriptsChanged(
                f"{script.path} changed since plan {plan.plan_id} was made "
                f"(checksum {item['checksum'][:12]}.. != "
                f"{script.checksum[:12]}..); make and review a new plan"
            )
    done = state.conn.execute(
        "SELECT id FROM runs WHERE source=? AND kind='plan' AND status='succeeded' LIMIT 1",
        (plan.plan_id,),
    ).fetchone()

    def select() -> list[Script]:
        applied = state.applied(target.project, target.database)
        ours = {
            r["id"]
            for r in state.conn.execute(
                "SELECT id FROM runs WHERE source=? AND kind='plan'", (plan.plan_id,)
            )
        }
        out = []
        for item in header["migrations"]:
            if item["revision"] in applied:
                if done is not None or applied[item["revision"]]["run_id"] in ours:
                    continue
                raise PlanRefused(
                    plan.path,
                    f"revision {item['revision']} is already applied (run "
                    f"{applied[item['revision']]['run_id']}): plan {plan.plan_id} is stale",
                    NEW_PLAN,
                )
            out.append(
                Script(
                    revision=item["revision"],
                    down_revision=None,
                    path=plan.path,
                    doc=item["description"],
                    checksum=item["checksum"],
                    plan=lambda ctx, item=item: _replay(ctx, plan, item),
                    archive_spec=item.get("archive", "full"),
                    expected_ops=item["operations"],
                )
            )
        if not out:
            raise PlanRefused(
                plan.path,
                f"plan {plan.plan_id} was already applied",
                "nothing to do (`fsmigrate history` shows the apply)",
            )
        return out

    return select


def _replay(ctx: Any, plan: PlanFile, item: dict[str, Any]) -> Iterator[Any]:
    header = plan.header
    ctx.note(
        f"applies plan {plan.plan_id} ({plan.path.name}, sha256 {plan.digest}): dry-run "
        f"run {item['dry_run']} by {header['created_by']} at {header['created_at']}, "
        f"{item['operations']} operations reviewed"
    )
    yield from plan.operations(item["revision"])
