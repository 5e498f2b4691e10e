#!/usr/bin/env python3
"""Clean up processor_heartbeats: one document per processor.

Dry-run by default: prints what would change (per processor: legacy documents, the
canonical ID, whether the canonical document is created, updated or kept; unknown IDs).
--apply executes it: legacy documents (both the `_None_` and the date-suffixed formats)
are deleted in batches of 500 with a progress bar, each processor's freshest legacy
document only after its canonical document is settled, and every change is archived in
the state file first (`fsmigrate audit` shows it later).

A thin entry over `fsmigrate rerun 0001` with this repository's migrations/, so every
run is recorded and can be repeated whenever old images create legacy documents again.

Examples:

\b
  bin/cleanup-heartbeat-docs.py --project my-proj            # dry-run: read the report
  bin/cleanup-heartbeat-docs.py --project my-proj --apply    # asks before a real project
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

try:
    import click

    from fsmigrate.cli import cli
except ImportError:  # run with a python that lacks the install: use the project's .venv
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    sys.exit(
        "cleanup-heartbeat-docs: fsmigrate is not installed; run bin/setup (or "
        "bin/demo / bin/test, which run it) first"
    )

MIGRATION = "0001"


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
@click.option("--apply", "apply_", is_flag=True, help="Execute (default: dry-run only).")
@click.option("--project", envvar="FSMIGRATE_PROJECT", help="Google Cloud project.")
@click.option("--database", default=None, help="Firestore database [default: (default)].")
@click.option(
    "--state",
    envvar="FSMIGRATE_STATE",
    default="state.db",
    show_default=True,
    help="SQLite state file.",
)
@click.option(
    "--report",
    "report_path",
    default=None,
    help="Also write the full report here (.md, .json or text).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option("--yes", is_flag=True, help="Do not ask before applying to a real project.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(
    apply_: bool,
    project: str | None,
    database: str | None,
    state: str,
    report_path: str | None,
    fmt: str,
    yes: bool,
    quiet: bool,
) -> None:
    args = ["--state", state, "--migrations", str(ROOT / "migrations")]
    if project:
        args += ["--project", project]
    if database:
        args += ["--database", database]
    args += ["rerun", MIGRATION, "--batch-size", "500", "--format", fmt]
    if not apply_:
        args += ["--dry-run", "--apply-hint", "the same command with --apply"]
    if report_path:
        args += ["--report", report_path]
    if yes:
        args.append("--yes")
    if quiet:
        args.append("--quiet")
    cli.main(args=args, prog_name="cleanup-heartbeat-docs")


if __name__ == "__main__":
    main()
