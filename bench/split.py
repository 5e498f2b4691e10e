"""Benchmark: splitting a collection into ranges for Beam's workers, before and after.

    .venv/bin/python bench/split.py --docs 50000 [--reps 3] [--parts 8] [--json FILE]

Starts its own Firestore emulator, seeds N heartbeat documents once (bench/cleanup.py's
data), then times, in rotating order in this process:

  count+names   the old split: a COUNT aggregation, then a keys-only scan of every name
                (`Store.count` + `Store.split_points`)
  one-pass      the split now: one keys-only scan that counts and keeps the points
                (`Store.split`)

and prints the median seconds of each and their ratio. The emulator has no
PartitionQuery, so both read every name; production Firestore answers a collection
group's split with PartitionQuery and reads none.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cleanup import COLLECTION, run_floor, seed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    from fsmigrate.firestore import emulator
    from fsmigrate.firestore.store import Store, Target

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        seed("bench", args.docs)
        run_floor("bench", limit=args.docs)  # untimed warm-up
        store = Store(Target("bench", "(default)", emu.host_port))

        def old() -> list[str]:
            total = store.count(COLLECTION)
            return store.split_points(COLLECTION, args.parts, total=total)

        def new() -> list[str]:
            return store.split(COLLECTION, args.parts)[0]

        methods = {"count+names": old, "one-pass": new}
        times: dict[str, list[float]] = {m: [] for m in methods}
        names = list(methods)
        for rep in range(args.reps):
            for name in names[rep % 2 :] + names[: rep % 2]:
                start = time.perf_counter()
                points = methods[name]()
                times[name].append(time.perf_counter() - start)
                print(
                    f"rep {rep + 1} {name:<12} {times[name][-1]:6.2f} s  {len(points)} points",
                    file=sys.stderr,
                )
        medians = {m: statistics.median(t) for m, t in times.items()}
        ratio = medians["one-pass"] / medians["count+names"]
        print(f"\nN = {args.docs} documents, {args.parts} parts, {args.reps} repetitions\n")
        for m, v in medians.items():
            print(f"{m:<12} {v:6.2f} s (median)")
        print(f"one-pass / count+names: {ratio:.2f}x")
        if args.json_path:
            Path(args.json_path).write_text(
                json.dumps(
                    {
                        "docs": args.docs,
                        "parts": args.parts,
                        "reps": args.reps,
                        "seconds": times,
                        "median_seconds": medians,
                        "ratio": ratio,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
