"""Make `state.db`: a state file of schema 3, written by fsmigrate itself (not by hand).

It was made with fsmigrate at commit 6462d0f (state schema 3), the last version before the
compact archive (schema 4), and is kept as it came out, to test the upgrade of a real
file. To make it again with that version (-S and another directory, so that neither the
editable install nor the working tree is imported):

    mkdir /tmp/fsmigrate-v3 && git archive 6462d0f fsmigrate | tar -x -C /tmp/fsmigrate-v3
    cd /tmp && PYTHONPATH=/tmp/fsmigrate-v3:$PWD/.venv/lib/python3.11/site-packages \
        /path/to/.venv/bin/python -S /path/to/tests/data/state-v3/make.py

It starts its own emulator and records, for project `fsm-v3-fixture`: a plain dry-run,
a dry-run with --plan-out, the apply of that plan (deletes, updates and an atomic rename),
a restore of one document, and an apply of 0002 killed (SIGKILL) before its second batch
was sent, so two operations are left `pending`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = "fsm-v3-fixture"
OLD = dt.datetime(1969, 7, 20, 20, 17, 40, 500000, tzinfo=dt.timezone.utc)


def items() -> dict[str, dict]:
    """The documents as seeded (the tests compare restored documents with these)."""
    from google.cloud.firestore_v1 import GeoPoint

    docs = {f"items/i{i}": {"n": i, "when": OLD, "raw": bytes([i, 0, 255]),
                            "geo": GeoPoint(1.5, -2.25), "secret": f"SECRET-v3-{i}",
                            "nested": {"list": [i, None, "x"], "inf": float("inf")}}
            for i in range(6)}
    docs["names/old"] = {"who": "ada", "since": OLD}
    docs.update({f"more/m{i}": {"k": i} for i in range(6)})
    return docs


def main() -> int:
    from google.cloud import firestore

    from fsmigrate import emulator, state as state_module

    assert state_module.SCHEMA_VERSION == 3, f"made by {state_module.__file__}, not schema 3"

    work = Path(tempfile.mkdtemp())
    emu = emulator.start(log_dir=work)
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
        client = firestore.Client(project=PROJECT)
        for path, data in items().items():
            client.document(path).set(data)
        state = work / "state.db"

        def fsm(*args: str, **extra: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", "fsmigrate", "--project", PROJECT, "--state", str(state),
                 "--migrations", str(HERE / "migrations"), *args],
                env={**env, **extra}, capture_output=True, text=True, check=False, cwd=work)

        def ok(*args: str) -> str:
            done = fsm(*args)
            assert done.returncode == 0, done.stderr
            return done.stdout

        ok("upgrade", "--dry-run", "--quiet")
        ok("upgrade", "--dry-run", "--quiet", "--to", "0001", "--plan-out", str(work / "p.jsonl"))
        ok("apply", str(work / "p.jsonl"), "--quiet")
        applied = json.loads(ok("history", "--format", "json"))["runs"][0]["run_id"]
        ok("restore", applied, "--doc", "items/i0", "--quiet")
        killed = fsm("upgrade", "--quiet", "--batch-size", "2",
                     FSMIGRATE_TEST_CRASH="before-commit:2")
        assert killed.returncode < 0, killed.stderr
        import sqlite3

        db = sqlite3.connect(state)  # the killed process left its WAL: fold it in
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        shutil.copy(state, HERE / "state.db")
    finally:
        emulator.stop(emu.pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
