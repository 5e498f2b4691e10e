"""Migration markers in the target database: the shared truth of what is applied.

The state file is the detailed audit of one operator's runs (every operation, every
before-image). The markers, one document per applied revision in the target database
(`_fsmigrate/meta/revisions/{revision}`), are what every operator, CI job and machine
sees: a revision with a marker is applied, wherever it was applied from. The lease lock
lives beside them (`_fsmigrate/lock`); scans of user data never see either.
"""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any, Optional

from fsmigrate import __version__
from fsmigrate.firestore.store import RESERVED_ROOT, Leases, Store
from fsmigrate.state.database import operator_name

DEFAULT_ROOT = RESERVED_ROOT


class Markers:
    def __init__(self, store: Store, root: str = DEFAULT_ROOT) -> None:
        self.store = store
        self.root = root
        self.collection = f"{root}/meta/revisions"

    def path(self, revision: str) -> str:
        return f"{self.collection}/{revision}"

    def read(self) -> dict[str, dict[str, Any]]:
        """Every marker, by revision."""
        return {
            doc.id: doc.to_dict() for doc in self.store.scan(self.collection, include_reserved=True)
        }

    def write(
        self,
        *,
        revision: str,
        checksum: str,
        description: str,
        run_id: str,
        kind: str,
        counts: Optional[dict[str, int]] = None,
        reason: Optional[str] = None,
    ) -> bool:
        """Create the marker of `revision`; False when one exists already (kept: it records
        where the revision was first applied; a rerun of a repeatable revision from an
        edited script records the new checksum in it)."""
        body = {
            "revision": revision,
            "checksum": checksum,
            "description": description,
            "run_id": run_id,
            "kind": kind,
            "operator": operator_name(),
            "host": socket.gethostname(),
            "tool_version": __version__,
            "applied_at": dt.datetime.now(dt.timezone.utc),
            "counts": counts or {},
            "reason": reason,
        }
        leases = Leases(self.store)
        if leases.create(self.path(revision), body) is not None:
            return True
        current = self.store.get(self.path(revision))
        if current is not None and current.get("checksum") != checksum and kind == "rerun":
            # a repeatable revision run again from an edited script: the marker now names
            # this version (where it was first applied stays as it was)
            leases.replace(
                self.path(revision),
                {
                    **current.to_dict(),
                    "checksum": checksum,
                    "version_run_id": run_id,
                    "version_applied_at": body["applied_at"],
                    "version_operator": body["operator"],
                },
                current.update_time,
            )
        return False
