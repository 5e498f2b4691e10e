"""Micro-benchmark: heartbeat ID classification speed on one core.

    .venv/bin/python bench/classifier.py [--ids 300000] [--reps 5] [--json FILE]

Classifies a realistic mix (3% canonical, 72% `_None_`, 24% date-suffixed, 1% unknown) and
prints the median IDs/s over the repetitions, with the ratio against a baseline in the
same run: the old cleanup's substring test (`"_202" in doc_id`), which is faster but wrong.
Goal (README): at least 300,000 IDs/s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsmigrate.heartbeats import Classifier


def ids(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    names = [f"Synthetic{i:03d}Processor" for i in range(30)] + ["NbacTeamBoxscoreProcessor"]
    out = []
    for i in range(n):
        name = rng.choice(names)
        r = rng.random()
        if r < 0.03:
            out.append(name)
        elif r < 0.75:
            out.append(f"{name}_None_{rng.getrandbits(32):08x}")
        elif r < 0.99:
            out.append(f"{name}_2026-11-{rng.randint(1, 28):02d}_{rng.getrandbits(32):08x}")
        else:
            out.append(f"odd-{i}")
    return out


def timed(fn, items: list[str]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=300_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    items = ids(args.ids)
    classify = Classifier().classify
    substring = "_202".__contains__
    ours, base = [], []
    for _ in range(args.reps):
        ours.append(timed(classify, items))
        base.append(timed(lambda s: substring(s), items))
    result = {
        "ids": args.ids,
        "reps": args.reps,
        "classify_ids_per_s": statistics.median(ours),
        "substring_ids_per_s": statistics.median(base),
    }
    result["ratio_vs_substring"] = result["classify_ids_per_s"] / result["substring_ids_per_s"]
    result["goal_ids_per_s"] = 300_000
    print(f"classify   {result['classify_ids_per_s']:>12,.0f} IDs/s (median of {args.reps})")
    print(f"substring  {result['substring_ids_per_s']:>12,.0f} IDs/s (the old, wrong test)")
    print(
        f"ratio      {result['ratio_vs_substring']:>12.2f}x   goal: >= 300,000 IDs/s: "
        f"{'met' if result['classify_ids_per_s'] >= 300_000 else 'NOT met'}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
