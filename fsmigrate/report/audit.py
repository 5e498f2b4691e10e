"""The audit report of one run, fit for a change ticket. No I/O: yields text.

Who ran it, when, from which host and tool version, against which project and database;
the script and its checksum; the dry-run it followed; planned / committed / skipped
counts per operation and per collection; documents merged per canonical ID (a
normalisation); errors and notes; and how to get the before-images.

`markdown()` is the report as markdown that reads the same in any renderer (every ID, path,
note and error goes through fsmigrate.report.mdsafe); `html()` is the same report as a standalone
page: each section's markdown rendered by markdown-it-py into a Jinja2 template, with SVG
charts. A line of the summary table is a (label, value) pair in `summary_rows()`: a plain
value is escaped as prose, an `mdsafe.Md` value (`md()`, `code()`...) is used as it is. A
section is a method of `Report` named in `SECTIONS`; its charts come from `Report.charts`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from fsmigrate.engine.estimate import describe
from fsmigrate.engine.traffic import describe_stats
from fsmigrate.normalize import merge_step
from fsmigrate.report import charts
from fsmigrate.report.mdsafe import bold, code, fence, header, md, row, text
from fsmigrate.scripts import archive

STATUSES = ("planned", "committed", "skipped", "failed", "pending")
OUTCOMES = (("create", "created"), ("update", "updated"), ("keep", "kept"))
SKIPPED_SHOWN = 200  # skipped operations listed (the export has all)
MERGES_SHOWN = 1000  # canonical documents listed in the merge table
CHART_ROWS = 30  # bars per chart (the tables list all)


def collection_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


def count_cells(by_status: dict[str, int]) -> list[int]:
    """The STATUSES columns of one row of the counts tables.

    `planned` is every operation the run planned, whatever became of it (the same as the
    run's total `planned`): an apply's rows are committed / skipped / failed / pending,
    never `planned`, so the status alone would say 0 planned. The other columns are the
    operations with that status.
    """
    return [sum(by_status.values()) if s == "planned" else by_status.get(s, 0) for s in STATUSES]


@dataclass
class Merge:
    """What a run did to one canonical document: the documents merged into it (deleted),
    by status, and what became of the canonical document itself."""

    target: str
    merged: dict[str, int] = field(default_factory=dict)
    outcome: str = "keep"  # create / update / keep
    source: Optional[str] = None  # the document whose data it was created or updated from
    outcome_status: Optional[str] = None

    @property
    def total(self) -> int:
        return sum(self.merged.values())


@dataclass
class Tally:
    """One pass over a run's operations (flat memory but per collection and per canonical
    document): counts per collection by status, and the merges (fsmigrate.normalize
    labels)."""

    by_collection: dict[str, dict[str, int]] = field(default_factory=dict)
    merges: dict[str, Merge] = field(default_factory=dict)

    def add(self, op: Any) -> None:
        counts = self.by_collection.setdefault(collection_of(op["path"]), {})
        counts[op["status"]] = counts.get(op["status"], 0) + 1
        step = merge_step(op["kind"], op["path"], op["label"])
        if step is None:
            return
        merge = self.merges.setdefault(step.target, Merge(step.target))
        if step.role in ("merged", "kept"):
            merge.merged[op["status"]] = merge.merged.get(op["status"], 0) + 1
        else:
            merge.outcome, merge.source, merge.outcome_status = step.role, step.source, op["status"]


def tally(state: Any, run_id: str) -> Tally:
    found = Tally()
    for op in state.ops(run_id):
        found.add(op)
    return found


def per_collection(state: Any, run_id: str) -> dict[str, dict[str, int]]:
    """{collection: {status: n}}, streamed over the run's operations."""
    return tally(state, run_id).by_collection


def followed_dry_run(state: Any, run: Any) -> Optional[Any]:
    """The dry-run a run followed: the one its reviewed plan came from (kind `plan`), or
    else the newest dry-run of the same revision and target before it."""
    if run["kind"] == "plan" and run["source"]:
        found = state.conn.execute(
            "SELECT * FROM runs WHERE mode='dry-run' AND invocation=? AND revision=?",
            (run["source"], run["revision"]),
        ).fetchone()
        if found is not None:
            return found
    return state.conn.execute(
        "SELECT * FROM runs WHERE mode='dry-run' AND project=? AND database=? AND revision=?"
        " AND started_at < ? ORDER BY started_at DESC LIMIT 1",
        (run["project"], run["database"], run["revision"], run["started_at"]),
    ).fetchone()


def summary_rows(state: Any, run: Any) -> list[tuple[str, Any]]:
    """The summary table: (label, value); plain values are escaped, `Md` ones kept."""
    status = bold(run["status"])
    rows: list[tuple[str, Any]] = [
        ("Run", code(run["id"])),
        ("Status", md("{} ({})", status, run["error_kind"]) if run["error_kind"] else status),
        ("Target", md("project {}, database {}", code(run["project"]), code(run["database"]))),
        ("Operator", md("{} on host {}", run["operator"], code(run["host"]))),
        ("Tool", md("fsmigrate {}", code(run["tool_version"]))),
        ("Started", run["started_at"]),
        ("Finished", run["finished_at"] or "(unfinished)"),
        ("Read as of", run["read_time"] or "(not recorded)"),
        ("Script", md("revision {}, sha256 {}", code(run["revision"]), code(run["checksum"]))),
    ]
    if run["resumes"]:
        rows.append(("Resumes", md("run {}", code(run["resumes"]))))
    if run["mode"] == "apply":
        rows.extend(_dry_run_rows(state, run))
    elif run["plan_digest"]:
        rows.append(
            (
                "Plan",
                md(
                    "wrote the plan {} for review (plan file sha256 {})",
                    code(run["invocation"]),
                    code(run["plan_digest"]),
                ),
            )
        )
    if run["retries"]:
        rows.append(("Retries", f"{run['retries']} (last: {run['last_retry_error']})"))
    rows.extend(_usage_rows(state, run))
    return rows


def _dry_run_rows(state: Any, run: Any) -> list[tuple[str, Any]]:
    dry = followed_dry_run(state, run)
    if dry is None:
        return [("Dry-run", md("{} recorded before this apply", bold("none")))]
    same = (
        "same script"
        if dry["checksum"] == run["checksum"]
        else md("{} (sha256 {})", bold("a different script"), code(dry["checksum"][:12] + ".."))
    )
    rows: list[tuple[str, Any]] = []
    if run["kind"] == "plan":
        rows.append(
            (
                "Plan",
                md(
                    "applied the reviewed plan {} exactly (plan file sha256 {})",
                    code(run["source"]),
                    code(run["plan_digest"]),
                ),
            )
        )
    rows.append(
        (
            "Dry-run",
            md(
                "{} by {} at {}, {} operations planned, {}",
                code(dry["id"]),
                dry["operator"],
                dry["started_at"],
                dry["planned"],
                same,
            ),
        )
    )
    return rows


SECTIONS = ("summary", "counts", "merges", "error", "notes", "skipped", "before_images")


class Report:
    """The report's sections, each yielding markdown, and the charts that go with them."""

    def __init__(self, state: Any, run_id: str, state_path: str) -> None:
        self.state, self.run, self.state_path = state, state.run(run_id), state_path
        self._tally: Optional[Tally] = None

    @property
    def tally(self) -> Tally:
        if self._tally is None:
            self._tally = tally(self.state, self.run["id"])
        return self._tally

    def summary(self) -> Iterator[str]:
        run = self.run
        yield (
            "# "
            + text(f"fsmigrate audit: {run['kind']} {run['mode']} of migration {run['revision']}")
            + "\n\n"
        )
        if run["description"]:
            yield text(run["description"]) + "\n\n"
        yield "| item | value |\n|---|---|\n"  # a header row that says something
        for label, value in summary_rows(self.state, run):
            yield row([label, value])

    def counts(self) -> Iterator[str]:
        run = self.run
        yield "\n## Counts\n\n"
        yield (
            "**planned** counts every operation the run planned; the other columns say what "
            "became of them.\n\n"
        )
        yield header(["operation", *STATUSES])
        by_kind = self.state.op_counts(run["id"])
        for kind in sorted(by_kind):
            yield row([kind, *count_cells(by_kind[kind])])
        yield row(
            [
                bold("total"),
                f"{run['planned']} planned",
                f"{run['committed']} committed",
                f"{run['skipped']} skipped",
                f"{run['failed']} failed or unsettled",
                "",
            ]
        )
        yield "\n### Per collection\n\n"
        yield header(["collection", *STATUSES])
        for collection, counts in sorted(self.tally.by_collection.items()):
            yield row([code(collection), *count_cells(counts)])

    def merges(self) -> Iterator[str]:
        merges = self.tally.merges
        if not merges:
            return
        outcomes = {key: sum(m.outcome == key for m in merges.values()) for key, _ in OUTCOMES}
        merged = sum(m.total for m in merges.values())
        collections = {collection_of(m.target) for m in merges.values()}
        where = md(" of {}", code(next(iter(collections)))) if len(collections) == 1 else ""
        if merged == len(merges):  # one document into each: a rename, not a merge
            yield from self._renames(merges, where)
            return
        yield "\n## Merged into canonical documents\n\n"
        yield (
            f"{_plural(merged, 'document')} merged into "
            f"{_plural(len(merges), 'canonical document')}{where}: "
            + ", ".join(f"{outcomes[key]} {word}" for key, word in OUTCOMES)
            + ".\n\n"
        )
        yield header(
            ["canonical document", "documents merged", "canonical document is", "from", "status"]
        )
        for merge in sorted(merges.values(), key=lambda m: m.target)[:MERGES_SHOWN]:
            shown = merge.target.rsplit("/", 1)[1] if where else merge.target
            yield row(
                [
                    code(shown),
                    merge.total,
                    dict(OUTCOMES)[merge.outcome],
                    code(merge.source.rsplit("/", 1)[1]) if merge.source else "",
                    _merge_status(merge),
                ]
            )
        if len(merges) > MERGES_SHOWN:
            yield f"\n... and {len(merges) - MERGES_SHOWN} more canonical documents.\n"

    def _renames(self, merges: Any, where: str) -> Iterator[str]:
        """The merge table of a run where every new document has exactly one source."""
        yield "\n## Renamed documents\n\n"
        yield f"{_plural(len(merges), 'document')} renamed{where}.\n\n"
        yield header(["new ID", "old ID", "status"])
        for merge in sorted(merges.values(), key=lambda m: m.target)[:MERGES_SHOWN]:
            shown = merge.target.rsplit("/", 1)[1] if where else merge.target
            source = merge.source.rsplit("/", 1)[1] if merge.source else ""
            yield row([code(shown), code(source) if source else "", _merge_status(merge)])
        if len(merges) > MERGES_SHOWN:
            yield f"\n... and {len(merges) - MERGES_SHOWN} more renamed documents.\n"

    def error(self) -> Iterator[str]:
        if self.run["error"]:
            title = "Stopped" if self.run["status"] == "stopped" else "Error"
            yield f"\n## {title}\n\n" + fence(self.run["error"])

    def notes(self) -> Iterator[str]:
        if self.state.note_count(self.run["id"]):
            yield "\n## Notes from the migration\n\n"
            yield from (f"- {text(n)}\n" for n in self.state.iter_notes(self.run["id"]))

    def skipped(self) -> Iterator[str]:
        run = self.run
        shown = 0
        for op in self.state.ops(run["id"], status="skipped", limit=SKIPPED_SHOWN):
            if not shown:
                yield "\n## Skipped operations\n\n" + header(["document", "operation", "why"])
            shown += 1
            yield row([code(op["path"]), op["kind"], op["reason"] or ""])
        if run["skipped"] > shown:
            yield f"\n... and {run['skipped'] - shown} more.\n"

    def before_images(self) -> Iterator[str]:
        run, path = self.run, shlex.quote(self.state_path)
        yield "\n## Before-images\n\n"
        if (run["archive_policy"] or "full") != "full" or run["pruned_at"]:
            yield text(f"Archive: {archive.describe(run)}.") + "\n\n"
        if archive.unavailable(run, "export") is None:
            yield md(
                "Every document this run changed or deleted was archived in the state "
                "file ({}) before the write was sent. To get them:\n\n",
                code(self.state_path),
            )
            yield fence(
                f"fsmigrate --state {path} audit {shlex.quote(run['id'])} --export "
                f"before-images.jsonl\nfsmigrate --project "
                f"{shlex.quote(run['project'])} --state {path} restore "
                f"{shlex.quote(run['id'])} --dry-run\n",
                "sh",
            )
        counts = json.loads(run["counts"] or "{}")
        if counts:
            yield (
                "\n"
                + text(
                    "Planned by kind: "
                    + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                    + "."
                )
                + "\n"
            )

    def charts(self, section: str) -> list[Any]:
        """The charts drawn after a section in the HTML page."""
        if section == "counts":
            by_kind = self.state.op_counts(self.run["id"])
            by_collection = sorted(
                self.tally.by_collection.items(), key=lambda item: (-sum(item[1].values()), item[0])
            )
            return [
                charts.horizontal_bars(
                    "operations-per-kind",
                    "operations per kind",
                    sorted(by_kind.items()),
                    _legend(by_kind),
                    limit=CHART_ROWS,
                    unit="operations",
                ),
                charts.horizontal_bars(
                    "operations-per-collection",
                    "operations per collection",
                    by_collection,
                    _legend(dict(by_collection)),
                    limit=CHART_ROWS,
                    unit="operations",
                ),
            ]
        if section == "merges" and self.tally.merges:
            merges = sorted(self.tally.merges.values(), key=lambda m: (-m.total, m.target))
            return [
                charts.horizontal_bars(
                    "merged-per-canonical-id",
                    "documents merged per canonical ID, by what became of the canonical document",
                    [(m.target.rsplit("/", 1)[1], {m.outcome: m.total}) for m in merges],
                    OUTCOMES,
                    limit=CHART_ROWS,
                    unit="documents merged",
                )
            ]
        return []


def _legend(counts: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    """The statuses that occur, in STATUSES order: `planned` for a dry-run, what became of
    the operations for an apply."""
    present = {status for by_status in counts.values() for status, n in by_status.items() if n}
    return [(status, status) for status in STATUSES if status in present]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _merge_status(merge: Merge) -> str:
    done = ", ".join(f"{n} {status}" for status in STATUSES if (n := merge.merged.get(status, 0)))
    if merge.outcome_status not in (None, "planned", "committed"):
        done += f"; the {merge.outcome} was {merge.outcome_status}"
    return done


def markdown(state: Any, run_id: str, state_path: str) -> Iterator[str]:
    report = Report(state, run_id, state_path)
    for section in SECTIONS:
        yield from getattr(report, section)()


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
    from fsmigrate.report.runs import dumps, op_dict

    state.run(run_id)
    for found in state.ops(run_id):
        if found["before"] is None:
            continue
        op = op_dict(found, images=True)
        yield (
            dumps(
                {
                    "path": op["path"],
                    "kind": op["kind"],
                    "status": op["status"],
                    "before": op["before"],
                }
            )
            + "\n"
        )


@dataclass(frozen=True)
class Section:
    name: str
    html: Any  # markupsafe.Markup
    charts: list[Any]


def html(state: Any, run_id: str, state_path: str) -> Iterator[str]:
    """The same report as a standalone HTML page, with its charts (no script, no network)."""
    from fsmigrate.report import pages

    report = Report(state, run_id, state_path)

    def sections() -> Iterator[Section]:
        for name in SECTIONS:
            markdown_text = "".join(getattr(report, name)())
            if markdown_text:
                yield Section(name, pages.markdown_html(markdown_text), report.charts(name))

    return pages.render("audit.html.j2", run_id=report.run["id"], sections=sections())
