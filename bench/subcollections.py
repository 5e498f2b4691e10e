"""Benchmark: what the subcollection check of ctx.delete's default costs, and snapshot reads.

    .venv/bin/python bench/subcollections.py [--docs 4000] [--reps 3] [--json FILE]

Starts its own Firestore emulator. Per repetition, in rotating order, on `--docs` flat
documents seeded again each time:

  keep     an apply of `ctx.delete(doc, subcollections="keep")` (no check)
  refuse   the same with the default, `subcollections="refuse"` (the check as it is now:
           keys-only queries over the names of each batch, `subtree.with_subtrees`)
  now      a scan of every document, read at the moment it is made (no read time)
  snapshot the same scan at a read time (what every plan now does)

Then the check alone, on the same `--docs` documents (one in 50 has a subcollection),
for every batch of 500, by each way considered:

  list-client  one ListCollectionIds call per document through the Firestore client, 32
               at once (the check before: `Store.subcollections`)
  list-fast    the same calls made directly on fsmigrate's API (`Store.api`), 32 at once:
               what pipelining the listing with the batch would cost at best
  names        the keys-only queries over the batches' names (the check now: one
               `SubtreeCheck` at a read time, as a plan's)

Prints the medians, the ratios refuse/keep and snapshot/now measured in this run, and the
calls and billed reads each way of checking makes per 1,000 deletes (a query is billed
one read per name it returns, at least one; a ListCollectionIds call one read).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fsmigrate import api  # noqa: E402
from fsmigrate.firestore.store import Store, Target  # noqa: E402
from fsmigrate.firestore.subtree import SubtreeCheck  # noqa: E402
from fsmigrate.testing import started_emulator  # noqa: E402

SCRIPT = '''"""Delete every document of items."""
revision = "0001"
down_revision = None

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc, subcollections={mode!r})
'''
BATCH = 500
USAGE: Counter[str] = Counter()  # calls and billed reads of the checks, by kind


def _counting() -> None:
    """Count every check call the Store makes (in this process) and what it bills."""
    names_from, subcollections = Store.names_from, Store.subcollections

    def counted_names(self: Store, *args: Any, **kwargs: Any) -> list[str]:
        found = names_from(self, *args, **kwargs)
        USAGE["query calls"] += 1
        USAGE["query reads"] += max(1, len(found))
        return found

    def counted_listing(self: Store, *args: Any, **kwargs: Any) -> list[str]:
        USAGE["listing calls"] += 1
        USAGE["listing reads"] += 1
        return subcollections(self, *args, **kwargs)

    Store.names_from = counted_names  # type: ignore[method-assign]
    Store.subcollections = counted_listing  # type: ignore[method-assign]


def seed(client: Any, n: int, subtree_every: int = 0) -> None:
    for start in range(0, n, 500):
        batch = client.batch()
        for i in range(start, min(n, start + 500)):
            batch.set(client.document(f"items/i{i:06d}"), {"n": i})
        batch.commit()
    if subtree_every:
        batch = client.batch()
        for i in range(0, n, subtree_every):
            batch.set(client.document(f"items/i{i:06d}/events/e1"), {"n": i})
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


def checks(n: int) -> dict[str, Any]:
    """The three ways of checking, on one project; what each finds must agree."""
    from google.cloud import firestore

    project = "bench-" + uuid.uuid4().hex[:8]
    seed(firestore.Client(project=project), n, subtree_every=50)
    store = Store(Target(project, emulator_host="set"))
    paths = [f"items/i{i:06d}" for i in range(n)]
    parent = f"{store.doc_name('')}".rstrip("/")
    metadata = store.metadata

    def fast(path: str) -> list[str]:
        request = {"parent": f"{parent}/{path}"}
        return list(store.api.list_collection_ids(request=request, metadata=metadata, retry=None))

    def listed(lister: Any) -> set[str]:
        with ThreadPoolExecutor(32) as pool:
            return {p for p, names in zip(paths, pool.map(lister, paths)) if names}

    def by_names() -> set[str]:
        found: set[str] = set()
        check = SubtreeCheck(store, dt.datetime.now(dt.timezone.utc))  # as a plan's
        for start in range(0, n, BATCH):
            found |= check.find(paths[start : start + BATCH])
        return {p for p in found if store.subcollections(p)}  # listed for the note's names

    ways = {
        "list-client": lambda: listed(store.subcollections),
        "list-fast": lambda: listed(fast),
        "names": by_names,
    }
    out: dict[str, Any] = {}
    results = []
    for name, way in ways.items():
        before = USAGE.copy()
        started = time.perf_counter()
        results.append(way())
        took = time.perf_counter() - started
        used = USAGE - before
        if name == "list-fast":  # not through the Store: one call, one read each
            used = Counter({"listing calls": n, "listing reads": n})
        out[name] = {
            "seconds": took,
            "calls_per_1000": 1000 * (used["query calls"] + used["listing calls"]) / n,
            "reads_per_1000": 1000 * (used["query reads"] + used["listing reads"]) / n,
        }
    assert all(r == results[0] for r in results), "the ways of checking disagree"
    assert len(results[0]) == -(-n // 50)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    _counting()
    times: dict[str, list[float]] = {"keep": [], "refuse": [], "now": [], "snapshot": []}
    usage: list[Counter[str]] = []
    check_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, started_emulator(Path(tmp) / "emulator"):
        work = Path(tmp)
        cases = list(times)
        for rep in range(args.reps):
            for case in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
                if case in ("keep", "refuse"):
                    before = USAGE.copy()
                    times[case].append(delete_all(work, case, args.docs))
                    if case == "refuse":
                        usage.append(USAGE - before)
                else:
                    times[case].append(scan(args.docs, case == "snapshot"))
            check_runs.append(checks(args.docs))
    median = {case: statistics.median(values) for case, values in times.items()}
    print(f"N = {args.docs} deletes, {args.reps} repetitions, medians\n")
    for case, value in median.items():
        print(f"{case:<9} {value:7.3f} s")
    ratios = {
        "refuse/keep": median["refuse"] / median["keep"],
        "snapshot/now": median["snapshot"] / median["now"],
    }
    for name, value in ratios.items():
        print(f"{name:<15} {value:.2f}x")
    apply_usage = {k: 1000 * v / args.docs for k, v in usage[-1].items()}
    print(
        "the apply with refuse, per 1,000 deletes: "
        + ", ".join(f"{v:.1f} {k}" for k, v in sorted(apply_usage.items()))
    )
    print(f"\nthe check alone, {args.docs} documents (1 in 50 with a subcollection), medians:")
    check = {}
    for way in check_runs[0]:
        check[way] = {
            key: statistics.median(run[way][key] for run in check_runs)
            for key in check_runs[0][way]
        }
        print(
            f"{way:<12} {check[way]['seconds']:6.3f} s  "
            f"{check[way]['calls_per_1000']:7.1f} calls and "
            f"{check[way]['reads_per_1000']:7.1f} billed reads per 1,000 deletes"
        )
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps(
                {
                    "docs": args.docs,
                    "reps": args.reps,
                    "seconds": times,
                    "median_seconds": median,
                    "ratios": ratios,
                    "apply_refuse_per_1000": apply_usage,
                    "check_alone": check,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
