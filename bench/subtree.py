"""Benchmark: deleting a subtree of N descendants against deleting N top-level documents.

    .venv/bin/python bench/subtree.py [--docs 100000] [--small 20000] [--reps 3] [--json FILE]

Starts its own Firestore emulator. Per repetition, in rotating order, each case on data
seeded again (200-byte documents), applied by `fsmigrate upgrade` in a process of its own
(its peak resident memory is its own VmHWM):

  flat      `ctx.delete(doc, subcollections="keep")` of N documents of a top-level
            collection (`items/*`): the plain delete, the baseline
  subtree   `ctx.delete(ctx.get("users/u1"), subcollections="delete")` with N documents
            under `users/u1` (`users/u1/events/*`, one in ten with one more level under it)
  small     the same subtree delete with `--small` descendants

Every case deletes and archives every document (checked: the committed count and the
archive's rows). Prints the medians, subtree/flat (time) and the peak memory of subtree
against small, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak import own_peak_mb  # noqa: E402

FLAT = '''"""Delete every document of items."""
revision = "0001"
down_revision = None

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc, subcollections="keep")
'''
SUBTREE = '''"""Erase user u1 and everything under it."""
revision = "0001"
down_revision = None

def plan(ctx):
    yield ctx.delete(ctx.get("users/u1"), subcollections="delete")
'''
PAD = "x" * 180


def paths(case: str, n: int) -> list[str]:
    if case == "flat":
        return [f"items/i{i:07d}" for i in range(n)]
    found, i = ["users/u1"], 0  # the parent and n documents under it
    while len(found) < n + 1:
        found.append(f"users/u1/events/e{i:07d}")
        if i % 10 == 0 and len(found) < n + 1:
            found.append(f"users/u1/events/e{i:07d}/parts/p0")
        i += 1
    return found


def seed(project: str, docs: list[str]) -> None:
    from google.cloud import firestore

    client = firestore.Client(project=project)

    def write(chunk: list[str]) -> None:
        batch = client.batch()
        for path in chunk:
            batch.set(client.document(path), {"pad": PAD, "n": len(path)})
        batch.commit()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [docs[i : i + 500] for i in range(0, len(docs), 500)]))


def worker(work: Path, project: str) -> None:
    """Apply the migration in `work` and print its time, peak memory and counts."""
    from fsmigrate import api

    cfg = api.Config(project=project, state=work / "state.db", migrations=work / "migrations")
    started = time.perf_counter()
    run = api.upgrade(cfg).runs[0]
    seconds = time.perf_counter() - started
    db = sqlite3.connect(work / "state.db")
    archived = db.execute("SELECT COUNT(*) FROM ops WHERE status='committed'").fetchone()[0]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": own_peak_mb(),
                "committed": run.committed,
                "archived": archived,
                "status": run.status,
            }
        )
    )


def measure(case: str, n: int, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    from fsmigrate.firestore import emulator

    project = f"bench-{case}"
    emulator.reset(env["FIRESTORE_EMULATOR_HOST"], project)
    docs = paths(case, n)
    started = time.perf_counter()
    seed(project, docs)
    print(f"seeded {len(docs)} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    work = Path(tempfile.mkdtemp(dir=tmp))
    (work / "migrations").mkdir()
    (work / "migrations" / "0001_delete.py").write_text(FLAT if case == "flat" else SUBTREE)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(work), "--project", project],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{case}: {out.stderr.strip().splitlines()[-1:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded", result
    assert result["committed"] == result["archived"] == len(docs), (result, len(docs))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker")
    parser.add_argument("--project")
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), args.project)
        return

    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    sizes = {"flat": args.docs, "subtree": args.docs, "small": args.small}
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in sizes}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cases = list(sizes)
            for rep in range(args.reps):
                for case in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
                    found = measure(case, sizes[case], Path(tmp), env)
                    runs[case].append(found)
                    print(
                        f"rep {rep + 1} {case:<8} {found['seconds']:7.1f} s "
                        f"{found['peak_mb']:6.1f} MB",
                        file=sys.stderr,
                    )
    finally:
        emulator.stop(emu.pid)
    median = {
        case: {key: statistics.median(r[key] for r in found) for key in ("seconds", "peak_mb")}
        for case, found in runs.items()
    }
    ratio = median["subtree"]["seconds"] / median["flat"]["seconds"]
    growth = median["subtree"]["peak_mb"] - median["small"]["peak_mb"]
    print(f"\n{args.reps} repetitions, medians\n")
    for case, value in median.items():
        print(
            f"{case:<8} {sizes[case]:>7} documents {value['seconds']:7.1f} s "
            f"{value['peak_mb']:6.1f} MB peak"
        )
    print(f"subtree/flat time ({args.docs} documents): {ratio:.2f}x")
    print(f"subtree peak memory, {args.docs} - {args.small} documents: {growth:+.1f} MB")
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps(
                {
                    "sizes": sizes,
                    "reps": args.reps,
                    "runs": runs,
                    "median": median,
                    "subtree_over_flat": ratio,
                    "peak_growth_mb": growth,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
