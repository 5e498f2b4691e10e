"""Test helpers: write migration scripts into a temp directory, run the CLI in-process."""

from __future__ import annotations

import json
import sys
import textwrap
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
