"""Catch writes made through the Firestore client from a migration's own code.

While `ClientWrites.forbidden()` is active, every write RPC of the Firestore client
(commit, batch_write, write, create/update/delete_document; sync and async) looks at the
calling thread's stack: when a frame belongs to a file of the migrations directory, the
write comes from a migration (its plan, a helper it calls, its module code) instead of
from fsmigrate's runner, so it is refused before it is sent and recorded with that
file and line. fsmigrate's own commits (the commit threads, the lease, the markers) never
have a migration's frame on their stack and go through.
"""

from __future__ import annotations

import contextlib
import functools
import linecache
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Optional

WRITE_RPCS = (
    "commit",
    "batch_write",
    "write",
    "create_document",
    "update_document",
    "delete_document",
)


@dataclass(frozen=True)
class WriteSite:
    """Where a migration wrote through the client."""

    path: str
    line: int
    code: str
    rpc: str

    def describe(self) -> str:
        code = f" (`{self.code}`)" if self.code else ""
        return (
            f"{self.path}:{self.line}{code} writes to Firestore through the client "
            f"({self.rpc}), not through ctx: yield ctx.set / ctx.update / ctx.delete / "
            "ctx.create instead, so the write is in the dry-run, guarded by a "
            "precondition and archived"
        )


class ClientWriteBlocked(RuntimeError):
    """Raised inside the migration in place of its write (the write is never sent)."""


class ClientWriteError(AssertionError):
    """A migration wrote (tried to write) through the Firestore client."""

    def __init__(self, sites: list[WriteSite]) -> None:
        self.sites = sites
        more = f" (and {len(sites) - 1} more)" if len(sites) > 1 else ""
        super().__init__(sites[0].describe() + more)


class ClientWrites:
    """Refuses and records client writes made from files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.sites: list[WriteSite] = []
        self._known: dict[str, Optional[str]] = {}
        self._lock = threading.Lock()

    def _migration_file(self, filename: str) -> Optional[str]:
        """`filename` when it is a file under the migrations directory, else None."""
        if filename not in self._known:
            try:
                inside = Path(filename).resolve().is_relative_to(self.root)
            except (OSError, ValueError):
                inside = False
            self._known[filename] = filename if inside else None
        return self._known[filename]

    def site(self, frame: Optional[FrameType], rpc: str) -> Optional[WriteSite]:
        """The innermost frame of a migration file on the stack, if any."""
        while frame is not None:
            path = self._migration_file(frame.f_code.co_filename)
            if path is not None:
                code = linecache.getline(path, frame.f_lineno).strip()
                return WriteSite(path, frame.f_lineno, code, rpc)
            frame = frame.f_back
        return None

    def _wrap(self, original: Callable[..., Any], rpc: str) -> Callable[..., Any]:
        @functools.wraps(original)
        def checked(client: Any, *args: Any, **kwargs: Any) -> Any:
            found = self.site(sys._getframe(1), rpc)
            if found is not None:
                with self._lock:
                    self.sites.append(found)
                raise ClientWriteBlocked(found.describe())
            return original(client, *args, **kwargs)

        return checked

    @contextlib.contextmanager
    def forbidden(self) -> Iterator[ClientWrites]:
        """Refuse client writes from migration files while the block runs; on leaving it,
        raise ClientWriteError when there was any (even if the migration caught the
        refusal, or the run failed because of it)."""
        from google.cloud.firestore_v1.services.firestore import async_client, client

        patched: list[tuple[type, str, Any]] = []
        for cls in (client.FirestoreClient, async_client.FirestoreAsyncClient):
            for rpc in WRITE_RPCS:
                original = cls.__dict__.get(rpc)
                if original is not None:
                    patched.append((cls, rpc, original))
                    setattr(cls, rpc, self._wrap(original, rpc))
        start = len(self.sites)
        try:
            yield self
        except BaseException as exc:
            if len(self.sites) > start:
                raise ClientWriteError(self.sites[start:]) from exc
            raise
        finally:
            for owner, rpc, original in reversed(patched):
                setattr(owner, rpc, original)
        if len(self.sites) > start:
            raise ClientWriteError(self.sites[start:])
