"""Benchmark: traffic control. A capped apply keeps to its schedule; an uncapped one is as
fast as before.

    .venv/bin/python bench/throttle.py [--deletes 20000] [--max-rate 2000] [--reps 3]
                                       [--docs 50000] [--cleanup-reps 3] [--json FILE]

Starts its own Firestore emulator. Two cases, each method in a fresh subprocess (imports
are not part of the measurement):

  throttled   N deletes (a migration that deletes every document of a collection, seeded
              again before each repetition) with `fsmigrate upgrade --max-rate R`. The
              time the deletes take, from the journal's commit times (the last commit
              time minus the first, plus the first commit's own slot: its operations / R),
              is compared with the schedule's, N / R seconds (what the dry-run's estimate
              says); the ratio should be within 5% of 1. The whole command's time is shown
              too: it adds the emulator's first answer to the scan (about a second for
              20,000 documents: it builds the whole result before it streams) and the
              lease and marker writes.
  unthrottled the emulator's default (no limiter at all): bench/cleanup.py's `script` (the
              old cleanup) and `apply` (fsmigrate upgrade of the heartbeat cleanup) on the
              same data, in rotating order; apply_vs_script is compared with the figure of
              the README's Performance section (1.20x when it was measured without traffic
              control). With `--baseline DIR` (a copy of the code from before, e.g.
              `git archive COMMIT | tar -x -C DIR`), that code's apply is measured in the
              same rotation, so the comparison does not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COLLECTION = "bench_items"
DELETE_ALL = f'''"""Delete every document of {COLLECTION}."""
revision = "0001"
down_revision = None


def plan(ctx):
    for doc in ctx.scan("{COLLECTION}"):
        yield ctx.delete(doc)
'''


def seed(project: str, total: int) -> None:
    from google.cloud import firestore

    client = firestore.Client(project=project)
    batch, count = client.batch(), 0
    for i in range(total):
        batch.set(
            client.document(f"{COLLECTION}/d{i:07d}"),
            {"n": i, "status": "stale", "payload": "x" * 120},
        )
        count += 1
        if count == 500:
            batch.commit()
            batch, count = client.batch(), 0
    if count:
        batch.commit()


def worker(project: str, migrations: str, max_rate: str) -> None:
    """One capped apply, in this process; prints its times and what the run recorded."""
    import fsmigrate.cli  # noqa: F401  (imports are not part of the measurement)
    from fsmigrate import api
    from fsmigrate.cli import cli
    from fsmigrate.scripts.operations import parse_timestamp

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "--project",
            project,
            "--state",
            f"{tmp}/state.db",
            "--migrations",
            migrations,
            "upgrade",
            "--quiet",
            "--format",
            "json",
            "--max-rate",
            max_rate,
        ]
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            cli.main(args=args, standalone_mode=False)
        seconds = time.perf_counter() - start
        run = json.loads(out.getvalue())["migrations"][0]
        cfg = api.Config(project=project, state=f"{tmp}/state.db", migrations=migrations)
        per_commit: dict[str, int] = {}
        for line in "".join(api.audit(cfg, run["run_id"]).chunks("jsonl")).splitlines():
            when = json.loads(line)["commit_time"]
            per_commit[when] = per_commit.get(when, 0) + 1
    commits = sorted((parse_timestamp(t).timestamp(), n) for t, n in per_commit.items())
    writing = commits[-1][0] - commits[0][0] + commits[0][1] / float(max_rate)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "write_seconds": writing,
                "commits": len(commits),
                "committed": run["committed"],
                "actual": run["actual"],
                "traffic": run["traffic"],
            }
        )
    )


def throttled(project: str, deletes: int, max_rate: float, env: dict, migrations: Path) -> dict:
    from fsmigrate.firestore import emulator

    emulator.reset(env["FIRESTORE_EMULATOR_HOST"], project)
    seed(project, deletes)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "--project",
            project,
            "--migrations",
            str(migrations),
            "--max-rate",
            str(max_rate),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deletes", type=int, default=20_000)
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--docs",
        type=int,
        default=50_000,
        help="documents of the unthrottled comparison (0: skip it)",
    )
    parser.add_argument("--cleanup-reps", type=int, default=3)
    parser.add_argument("--baseline", help="a copy of the code from before, measured too")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--project", default="bench")
    parser.add_argument("--migrations")
    args = parser.parse_args()
    if args.worker:
        worker(args.project, args.migrations, str(args.max_rate))
        return 0

    import cleanup

    from fsmigrate.engine.traffic import Limits
    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        migrations = Path(tempfile.mkdtemp()) / "migrations"
        migrations.mkdir()
        (migrations / "0001_delete_all.py").write_text(textwrap.dedent(DELETE_ALL))
        schedule = Limits(max_rate=args.max_rate).seconds_for(args.deletes)
        capped = []
        for rep in range(args.reps):
            result = throttled("bench-throttle", args.deletes, args.max_rate, env, migrations)
            assert result["committed"] == args.deletes, result
            result["ratio"] = result["write_seconds"] / schedule
            result["command_ratio"] = result["seconds"] / schedule
            capped.append(result)
            print(
                f"rep {rep + 1} throttled: deletes {result['write_seconds']:6.2f} s, "
                f"command {result['seconds']:6.2f} s (schedule {schedule:.2f} s, ratios "
                f"{result['ratio']:.3f} and {result['command_ratio']:.3f}; waited "
                f"{result['traffic']['waited_seconds']:.2f} s)",
                file=sys.stderr,
            )

        benches = {"script": (cleanup, "script"), "apply": (cleanup, "apply")}
        if args.baseline:
            spec = importlib.util.spec_from_file_location(
                "baseline_cleanup", Path(args.baseline) / "bench" / "cleanup.py"
            )
            baseline = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(baseline)
            benches["apply-baseline"] = (baseline, "apply")
        names = list(benches)
        cleanup_runs: dict[str, list[dict]] = {name: [] for name in names}
        for rep in range(args.cleanup_reps if args.docs else 0):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                module, method = benches[name]
                result = module.measure(method, "bench", args.docs, env, [])
                cleanup_runs[name].append(result)
                print(
                    f"rep {rep + 1} {name:<15} {result['seconds']:7.2f} s "
                    f"{result['docs_per_s']:9.0f} docs/s",
                    file=sys.stderr,
                )

        report: dict = {}
        if capped:
            ratio = statistics.median(r["ratio"] for r in capped)
            command = statistics.median(r["command_ratio"] for r in capped)
            print(
                f"\nthrottled: {args.deletes} deletes at --max-rate {args.max_rate:g}, "
                f"{args.reps} repetitions, medians"
            )
            print(
                f"  schedule {schedule:.2f} s; the deletes took "
                f"{statistics.median(r['write_seconds'] for r in capped):.2f} s, ratio "
                f"{ratio:.3f} ({'within' if abs(ratio - 1) <= 0.05 else 'NOT within'} 5%); "
                f"the whole command {statistics.median(r['seconds'] for r in capped):.2f} "
                f"s, ratio {command:.3f}"
            )
            report["throttled"] = {
                "deletes": args.deletes,
                "max_rate": args.max_rate,
                "schedule_seconds": schedule,
                "median_ratio": ratio,
                "median_command_ratio": command,
                "runs": capped,
            }
        if cleanup_runs["apply"]:
            med = {
                m: statistics.median(r["docs_per_s"] for r in rs) for m, rs in cleanup_runs.items()
            }
            print(
                f"unthrottled: {args.docs} heartbeat documents, {args.cleanup_reps} "
                f"repetitions, medians"
            )
            print(
                f"  script {med['script']:.0f} docs/s, apply {med['apply']:.0f} docs/s, "
                f"apply_vs_script {med['apply'] / med['script']:.2f}x"
            )
            report["unthrottled"] = {
                "docs": args.docs,
                "median_docs_per_s": med,
                "apply_vs_script": med["apply"] / med["script"],
                "runs": cleanup_runs,
            }
            if "apply-baseline" in med:
                before = med["apply-baseline"]
                print(
                    f"  the code from before ({args.baseline}): apply {before:.0f} docs/s, "
                    f"apply_vs_script {before / med['script']:.2f}x; apply now vs before "
                    f"{med['apply'] / before:.2f}x"
                )
                report["unthrottled"]["baseline_apply_vs_script"] = before / med["script"]
                report["unthrottled"]["apply_vs_baseline"] = med["apply"] / before
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(report, indent=2))
        return 0
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
