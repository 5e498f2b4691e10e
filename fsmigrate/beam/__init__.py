"""Running a migration on Apache Beam (the optional extra `fsmigrate[beam]`).

The coordinator (the process that ran `fsmigrate upgrade --runner beam`) takes the lease,
checks drift, adopts markers and settles what an interrupted earlier run left in flight,
exactly as the local runner does; then a pipeline splits the migration's declared source
into document-name ranges, and workers plan, journal and commit batches with the same
Write protobufs, preconditions, batch bounds, skips, retries and re-read reconciliation.
A worker writes each batch to the run's journal directory (a file per batch, through
Beam's FileSystems: a local path or gs://) BEFORE sending it, and its outcome after:
a side effect, not a PCollection output, because Beam discards the outputs of a failed
bundle while the writes it sent stay done. After the pipeline, the coordinator imports
the journal into the state file, so history, audit, --export, restore and the reports
work exactly as for a local run.
"""

from __future__ import annotations

import importlib.util

from fsmigrate.errors import UsageError

INSTALL = "pip install 'fsmigrate[beam]'"


def require() -> None:
    """Raise a usage error naming the extra when apache-beam is not installed."""
    # found, not imported: importing Beam prints its own warnings ("Failed to import
    # GCSFileSystem", "apitools not found"), which go to the run's log, not the terminal
    if importlib.util.find_spec("apache_beam") is None:
        raise UsageError(f"--runner beam needs Apache Beam, which is not installed: {INSTALL}")
