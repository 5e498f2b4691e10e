"""Benchmark: the heartbeat cleanup on the local runner vs `--runner beam`, in one run.

    .venv/bin/python bench/beam.py --docs 50000 [--reps 3] [--rss 10000,50000] [--json FILE]

Starts its own Firestore emulator, re-seeds N heartbeat documents (~97% legacy, the same
data as bench/cleanup.py) before every measurement, and applies migration 0001 with

  local     `fsmigrate upgrade` (one process)
  beam-1    `fsmigrate upgrade --runner beam --workers 1` (DirectRunner, multi_processing)
  beam-2    `fsmigrate upgrade --runner beam --workers 2` (0001's class names are prefix
            keys: merged in their ranges, no GroupByKey)
  shuffle-2 the same on 2 workers without the prefix-key declaration: every document
            through the GroupByKey (how 0001 ran before issue 24)
  each-2    the same deletes by a per-document script on 2 workers (no GroupByKey)

each in a fresh process, in rotating order. It prints median seconds and documents per
second, the ratio of each Beam run to the local one, and peak memory: the coordinator's
own and the largest worker process's (VmHWM, read while they run: bench/peak.py). With --rss it measures
the peak memory at several sizes, to show how it grows with the number of documents.
On this 2-core machine the emulator, the coordinator and the workers share the cores.

    .venv/bin/python bench/beam.py --sizes 10000,40000 --methods local,beam-2 --reps 3

measures instead the cost of one more document: the client's CPU seconds (the measured
process and the worker processes it started: what GNU time reports; the emulator's are
not in it) and the wall seconds at each size, medians, and the slope between the sizes
per 1,000 documents, with each Beam method's slope against the local runner's; also
the coordinator's split alone (split/1k: on the emulator, which has no PartitionQuery, a
keys-only pass over every name; Firestore answers a top-level collection's split with
PartitionQuery, which reads no name) and the slope without it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cleanup import seed  # noqa: E402  (the same synthetic heartbeat documents)
from peak import ChildrenPeak, own_peak_mb  # noqa: E402  (VmHWM, not ru_maxrss)

METHODS = {
    "local": [],
    "beam-1": ["--runner", "beam", "--workers", "1"],
    "beam-2": ["--runner", "beam", "--workers", "2"],
    "shuffle-2": ["--runner", "beam", "--workers", "2"],
    "each-2": ["--runner", "beam", "--workers", "2"],
}
SCRIPT = ROOT / "migrations" / "0001_normalize_processor_heartbeats.py"


def without_prefix_keys() -> str:
    """Migration 0001 without its prefix-key declaration (every key shuffled)."""
    source = SCRIPT.read_text()
    for line in (
        "    prefix_keys=is_class_name,\n",
        "key_is_prefix = normalization.key_is_prefix\n",
    ):
        assert line in source, line
        source = source.replace(line, "")
    return source


# `each-2`: the same deletes by a per-document script (no GroupByKey: nothing shuffled)
EACH = '''"""Delete the legacy heartbeat documents, one document at a time."""
from fsmigrate.distributed import scan
from fsmigrate.heartbeats import classify

revision = "0001"
down_revision = None
source = scan("processor_heartbeats")


def each(ctx, doc):
    if classify(doc.id).is_legacy:
        yield ctx.delete(doc)
'''


def worker(method: str, project: str) -> None:
    import fsmigrate.cli  # noqa: F401  (imports are not part of the measurement)
    from fsmigrate.cli import cli
    from fsmigrate.firestore.store import Store

    split_cpu = [0.0]  # the coordinator's split: a pass over every name on the emulator only
    split = Store.split

    def timed_split(self: Store, *args: object, **kwargs: object) -> object:
        started = time.process_time()
        try:
            return split(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            split_cpu[0] += time.process_time() - started

    Store.split = timed_split  # type: ignore[assignment,method-assign]

    with tempfile.TemporaryDirectory() as tmp:
        migrations = ROOT / "migrations"
        if method.startswith("each"):
            migrations = Path(tmp) / "migrations"
            migrations.mkdir()
            (migrations / "0001_delete_legacy.py").write_text(EACH)
        elif method.startswith("shuffle"):
            migrations = Path(tmp) / "migrations"
            migrations.mkdir()
            (migrations / SCRIPT.name).write_text(without_prefix_keys())
        args = [
            "--project",
            project,
            "--state",
            f"{tmp}/state.db",
            "--migrations",
            str(migrations),
            "upgrade",
            "--quiet",
            "--format",
            "json",
            *METHODS[method],
        ]
        start = time.perf_counter()
        with open(os.devnull, "w") as sink, ChildrenPeak() as workers:
            stdout, sys.stdout = sys.stdout, sink
            try:
                cli.main(args=args, standalone_mode=False)
            finally:
                sys.stdout = stdout
        seconds = time.perf_counter() - start
    own = own_peak_mb()
    children = workers.largest_mb
    print(
        json.dumps(
            {
                "method": method,
                "seconds": seconds,
                "coordinator_mb": own,
                "worker_mb": children,
                "split_cpu_s": split_cpu[0],
            }
        )
    )


def measure(method: str, docs: int, env: dict) -> dict:
    from cleanup import WARM_UP, run_floor

    from fsmigrate.firestore import emulator

    emulator.reset(env["FIRESTORE_EMULATOR_HOST"], "bench")
    seed("bench", docs)
    run_floor("bench", limit=min(docs, WARM_UP))  # untimed: the emulator's warm-up
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", method],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["docs_per_s"] = docs / result["seconds"]
    # the client's CPU: the measured process and every process it started and reaped (the
    # DirectRunner's workers), as GNU time counts it; the emulator is not in it
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def slopes(methods: list[str], sizes: list[int], reps: int, env: dict) -> dict:
    """Each method at each size, `reps` times in rotating order: median wall and client
    CPU seconds, and the slope between the smallest and largest size (CPU seconds and
    wall seconds per extra 1,000 documents), with each Beam method's slope against the
    local runner's."""
    runs: dict[str, dict[int, list[dict]]] = {m: {n: [] for n in sizes} for m in methods}
    for rep in range(reps):
        for n in sizes:
            order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
            for method in order:
                result = measure(method, n, env)
                runs[method][n].append(result)
                print(
                    f"rep {rep + 1} N={n:<7} {method:<9} {result['seconds']:7.2f} s wall "
                    f"{result['cpu_s']:7.2f} s cpu",
                    file=sys.stderr,
                )
    low, high = min(sizes), max(sizes)
    out: dict = {"sizes": sizes, "reps": reps, "methods": {}}
    for method in methods:
        med = {
            n: {
                "median_seconds": statistics.median(r["seconds"] for r in runs[method][n]),
                "median_cpu_s": statistics.median(r["cpu_s"] for r in runs[method][n]),
                "median_split_cpu_s": statistics.median(r["split_cpu_s"] for r in runs[method][n]),
                "runs": runs[method][n],
            }
            for n in sizes
        }
        extra = (high - low) / 1000
        out["methods"][method] = {
            "by_size": med,
            "cpu_s_per_1000": (med[high]["median_cpu_s"] - med[low]["median_cpu_s"]) / extra,
            "split_cpu_s_per_1000": (
                med[high]["median_split_cpu_s"] - med[low]["median_split_cpu_s"]
            )
            / extra,
            "wall_s_per_1000": (med[high]["median_seconds"] - med[low]["median_seconds"]) / extra,
        }
    if "local" in out["methods"]:
        base = out["methods"]["local"]
        out["ratios"] = {
            f"{m}_cpu_slope_vs_local": v["cpu_s_per_1000"] / base["cpu_s_per_1000"]
            for m, v in out["methods"].items()
            if m != "local"
        }
        out["ratios"].update(
            {
                f"{m}_cpu_slope_without_split_vs_local": (
                    v["cpu_s_per_1000"] - v["split_cpu_s_per_1000"]
                )
                / base["cpu_s_per_1000"]
                for m, v in out["methods"].items()
                if m != "local"
            }
        )
        out["ratios"].update(
            {
                f"{m}_wall_at_{high}_vs_local": v["by_size"][high]["median_seconds"]
                / base["by_size"][high]["median_seconds"]
                for m, v in out["methods"].items()
                if m != "local"
            }
        )
    return out


def print_slopes(out: dict) -> None:
    sizes = out["sizes"]
    print(f"\nclient CPU (coordinator + workers) and wall, medians of {out['reps']}\n")
    head = "".join(f"{f'cpu s @{n}':>13}{f'wall s @{n}':>14}" for n in sizes)
    print(f"{'method':<10}{head}{'cpu s/1k':>10}{'split/1k':>10}{'wall s/1k':>11}")
    for method, v in out["methods"].items():
        cells = "".join(
            f"{v['by_size'][n]['median_cpu_s']:>13.2f}{v['by_size'][n]['median_seconds']:>14.2f}"
            for n in sizes
        )
        print(
            f"{method:<10}{cells}{v['cpu_s_per_1000']:>10.3f}"
            f"{v['split_cpu_s_per_1000']:>10.3f}{v['wall_s_per_1000']:>11.3f}"
        )
    print()
    for name, value in out.get("ratios", {}).items():
        print(f"{name:<34} {value:5.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rss", default="", help="sizes for the memory check, e.g. 10000,50000")
    parser.add_argument(
        "--sizes",
        default="",
        help="the per-document slope instead: sizes, e.g. 10000,40000 (CPU and wall)",
    )
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, "bench")
        return 0

    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        methods = args.methods.split(",")
        if args.sizes:
            found = slopes(methods, [int(n) for n in args.sizes.split(",")], args.reps, env)
            print_slopes(found)
            if args.json_path:
                Path(args.json_path).write_text(json.dumps(found, indent=2))
            return 0
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for rep in range(args.reps):
            for method in methods[rep % len(methods) :] + methods[: rep % len(methods)]:
                result = measure(method, args.docs, env)
                runs[method].append(result)
                print(
                    f"rep {rep + 1} {method:<9} {result['seconds']:7.2f} s "
                    f"{result['docs_per_s']:8.0f} docs/s  coordinator "
                    f"{result['coordinator_mb']:6.1f} MB  worker {result['worker_mb']:6.1f} MB",
                    file=sys.stderr,
                )
        summary = {
            m: {
                "median_seconds": statistics.median(r["seconds"] for r in rs),
                "median_docs_per_s": statistics.median(r["docs_per_s"] for r in rs),
                "coordinator_mb": max(r["coordinator_mb"] for r in rs),
                "worker_mb": max(r["worker_mb"] for r in rs),
                "runs": rs,
            }
            for m, rs in runs.items()
        }
        ratios = {
            f"{m}_seconds_vs_local": summary[m]["median_seconds"]
            / summary["local"]["median_seconds"]
            for m in summary
            if m != "local" and "local" in summary
        }
        growth: dict[str, dict[str, dict[str, float]]] = {}
        if args.rss:
            for method in methods:
                growth[method] = {}
                for n in (int(s) for s in args.rss.split(",")):
                    found = measure(method, n, env)
                    growth[method][str(n)] = {
                        "coordinator_mb": found["coordinator_mb"],
                        "worker_mb": found["worker_mb"],
                    }
        print(f"\nN = {args.docs} documents, {args.reps} repetitions, medians\n")
        print(f"{'method':<9}{'seconds':>9}{'docs/s':>9}{'coordinator MB':>16}{'worker MB':>11}")
        for m, s in summary.items():
            print(
                f"{m:<9}{s['median_seconds']:>9.2f}{s['median_docs_per_s']:>9.0f}"
                f"{s['coordinator_mb']:>16.1f}{s['worker_mb']:>11.1f}"
            )
        print()
        for name, value in ratios.items():
            print(f"{name:<31} {value:5.2f}x")
        for method, sizes in growth.items():
            print(
                f"memory {method:<7} "
                + "  ".join(
                    f"N={n}: coordinator {v['coordinator_mb']:.0f} MB, worker {v['worker_mb']:.0f} MB"
                    for n, v in sizes.items()
                )
            )
        if args.json_path:
            Path(args.json_path).write_text(
                json.dumps(
                    {
                        "docs": args.docs,
                        "reps": args.reps,
                        "summary": summary,
                        "ratios": ratios,
                        "memory_growth": growth,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
