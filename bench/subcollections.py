"""Benchmark: what the subcollection check of ctx.delete and snapshot reads cost.

    .venv/bin/python bench/subcollections.py [--docs 2000] [--reps 3]

Starts its own Firestore emulator. Per repetition, in rotating order, on `--docs` flat
documents seeded again each time:

  keep     an apply of `ctx.delete(doc, subcollections="keep")` (no listing call)
  refuse   the same with the default, `subcollections="refuse"` (one ListCollectionIds
           call per deleted document)
  now      a scan of every document, read at the moment it is made (no read time)
  snapshot the same scan at a read time (what every plan now does)

Prints the medians and the ratios refuse/keep and snapshot/now, measured in this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fsmigrate import api  # noqa: E402
from fsmigrate.firestore.store import Store, Target  # noqa: E402
from fsmigrate.testing import started_emulator  # noqa: E402

SCRIPT = '''"""Delete every document of items."""
revision = "0001"
down_revision = None

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc, subcollections={mode!r})
'''


def seed(client, n: int) -> None:
    for start in range(0, n, 500):
        batch = client.batch()
        for i in range(start, min(n, start + 500)):
            batch.set(client.document(f"items/i{i:06d}"), {"n": i})
        batch.commit()


def delete_all(work: Path, mode: str, n: int) -> float:
    from google.cloud import firestore

    project = "bench-" + uuid.uuid4().hex[:8]
    seed(firestore.Client(project=project), n)
    migrations = work / project
    migrations.mkdir()
    (migrations / "0001_delete.py").write_text(SCRIPT.format(mode=mode))
    cfg = api.Config(project=project, state=work / f"{project}.db", migrations=migrations)
    started = time.perf_counter()
    run = api.upgrade(cfg).runs[0]
    took = time.perf_counter() - started
    assert run.committed == n, run
    return took


def scan(n: int, snapshot: bool) -> float:
    from google.cloud import firestore

    project = "bench-" + uuid.uuid4().hex[:8]
    seed(firestore.Client(project=project), n)
    store = Store(Target(project, emulator_host="set"))
    read_time = dt.datetime.now(dt.timezone.utc) if snapshot else None
    started = time.perf_counter()
    count = sum(1 for _ in store.scan("items", read_time=read_time))
    took = time.perf_counter() - started
    assert count == n
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"keep": [], "refuse": [], "now": [], "snapshot": []}
    with tempfile.TemporaryDirectory() as tmp, started_emulator(Path(tmp) / "emulator"):
        work = Path(tmp)
        cases = list(times)
        for rep in range(args.reps):
            for case in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
                if case in ("keep", "refuse"):
                    times[case].append(delete_all(work, case, args.docs))
                else:
                    times[case].append(scan(args.docs, case == "snapshot"))
    median = {case: statistics.median(values) for case, values in times.items()}
    for case, value in median.items():
        print(f"{case:<9} median {value:7.3f} s over {args.reps} reps ({args.docs} documents)")
    print(f"refuse/keep     {median['refuse'] / median['keep']:.2f}x")
    print(f"snapshot/now    {median['snapshot'] / median['now']:.2f}x")


if __name__ == "__main__":
    main()
