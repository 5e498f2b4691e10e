"""Benchmark: splitting a collection into ranges for Beam's workers, before and after.

    .venv/bin/python bench/split.py --docs 40000 [--reps 3] [--parts 8] [--json FILE]

Starts its own Firestore emulator, seeds N heartbeat documents once (bench/cleanup.py's
data), then times, in rotating order in this process, the wall seconds and this
process's CPU seconds (its gRPC threads included) of

  one-pass   the split before: one keys-only pass that brings every name here and keeps
             every n-th (read with `Store.names_from`, the same keys-only stream)
  offsets    the split now (`Store.split`): a COUNT, then one keys-only query per point
             that skips to it on the server (`offset`): only the points come here

and prints the medians and their ratios. The emulator has no PartitionQuery, so on it both
read every name, and it answers each offset query by scanning the collection (the
offsets' wall time); production Firestore answers an unfiltered split with PartitionQuery
and reads no name, and skips an offset in its index.
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
    parser.add_argument("--docs", type=int, default=40_000)
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

        def one_pass() -> list[str]:
            names = store.names_from(f"{COLLECTION}/ ", limit=args.docs + 1)  # from the first
            names = [n for n in names if n.startswith(COLLECTION + "/")]
            step = -(-len(names) // args.parts)
            return names[step::step][: args.parts - 1]

        def offsets() -> list[str]:
            return store.split(COLLECTION, args.parts)[0]

        methods = {"one-pass": one_pass, "offsets": offsets}
        wall: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        names = list(methods)
        for rep in range(args.reps):
            for name in names[rep % 2 :] + names[: rep % 2]:
                start, used = time.perf_counter(), time.process_time()
                points = methods[name]()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - used)
                print(
                    f"rep {rep + 1} {name:<9} {wall[name][-1]:6.2f} s wall "
                    f"{cpu[name][-1]:6.3f} s cpu  {len(points)} points",
                    file=sys.stderr,
                )
        medians = {
            m: {"wall_s": statistics.median(wall[m]), "cpu_s": statistics.median(cpu[m])}
            for m in methods
        }
        ratios = {
            f"offsets_{k}_vs_one_pass": medians["offsets"][k] / medians["one-pass"][k]
            for k in ("wall_s", "cpu_s")
        }
        print(f"\nN = {args.docs} documents, {args.parts} parts, {args.reps} repetitions\n")
        for m, v in medians.items():
            print(f"{m:<9} {v['wall_s']:6.2f} s wall  {v['cpu_s']:6.3f} s cpu (medians)")
        for k, v in ratios.items():
            print(f"{k}: {v:.2f}x")
        if args.json_path:
            Path(args.json_path).write_text(
                json.dumps(
                    {
                        "docs": args.docs,
                        "parts": args.parts,
                        "reps": args.reps,
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "medians": medians,
                        "ratios": ratios,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
