"""Test helpers: write migration scripts into a temp directory, run the CLI in-process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from fsmigrate.cli import cli


def write_script(
    directory: Path, revision: str, down: str | None, body: str, doc: str = "A test migration."
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{revision}_test_{revision}.py"
    path.write_text(
        f'"""{doc}"""\nrevision = "{revision}"\ndown_revision = {down!r}\n\n'
        + textwrap.dedent(body)
    )
    return path


@dataclass
class Fsm:
    """Runs `fsmigrate --project P --state S --migrations M ...` in-process."""

    project: str
    state: Path
    migrations: Path

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            [
                "--project",
                self.project,
                "--state",
                str(self.state),
                "--migrations",
                str(self.migrations),
                *args,
            ],
            input=input,
        )

    def argv(self, *args: str) -> list[str]:
        """The same command line for a process of its own (`python -m fsmigrate ...`)."""
        return [
            sys.executable,
            "-m",
            "fsmigrate",
            "--project",
            self.project,
            "--state",
            str(self.state),
            "--migrations",
            str(self.migrations),
            *args,
        ]

    def json(self, *args: str) -> Any:
        result = self(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def ops_of(state: Path, run_id: str | None = None, status: str | None = None) -> list[dict]:
    """The operations the state file keeps (every run's, oldest first, or one run's), each
    as a dict with its before-image and write decoded (the file keeps them compressed)."""
    from fsmigrate.state.database import State

    db = State.open_readonly(state)
    assert db is not None, f"no state file {state}"
    try:
        runs = [run_id] if run_id else [r["id"] for r in reversed(db.runs())]
        return [dict(op) for run in runs for op in db.ops(run, status=status)]
    finally:
        db.close()


def seed_docs(client: Any, docs: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Write `docs` ({path: data}) in batches of 500; returns them."""
    batch, count = client.batch(), 0
    for path, data in docs.items():
        batch.set(client.document(path), data)
        count += 1
        if count == 500:
            batch.commit()
            batch, count = client.batch(), 0
    if count:
        batch.commit()
    return dict(docs)


def seed_items(
    client: Any,
    n: int,
    data: Callable[[int], dict[str, Any]] = lambda i: {"n": i},
    *,
    collection: str = "items",
    width: int = 5,
) -> dict[str, dict[str, Any]]:
    """Documents {collection}/i00000 .. (`width` digits) with `data(i)` ({"n": i} by
    default), in batches of 500; returns them by path."""
    return seed_docs(client, {f"{collection}/i{i:0{width}d}": data(i) for i in range(n)})


def items_of(client: Any) -> dict[str, Any]:
    """{id: n} of every document of `items`."""
    return {s.id: s.get("n") for s in client.collection("items").stream()}


class Background:
    """A call on a thread of this process (a long run to control from elsewhere): its
    result or its exception once `join`ed."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not end"


def wait_for(what: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `what` until it returns something true (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting")


def epoch(text: str) -> float:
    """An RFC 3339 time of the state file or a report, as seconds since the epoch."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def control_process(project: str, *args: str, operator: str = "oncall") -> Any:
    """`fsmigrate control ...` in a process of its own, as `operator`."""
    return subprocess.run(
        [sys.executable, "-m", "fsmigrate", "--project", project, "control", *args],
        env={**os.environ, "FSMIGRATE_OPERATOR": operator},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
