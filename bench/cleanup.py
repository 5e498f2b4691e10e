"""Benchmark: the heartbeat cleanup done by fsmigrate vs the usual ways, in one run.

    .venv/bin/python bench/cleanup.py --docs 50000 [--reps 3] [--json FILE] [--rss 10000,100000]

Starts its own Firestore emulator. For each repetition it re-seeds N heartbeat documents
(~97% legacy IDs, realistic fields) before every measurement, and measures, in rotating
order, each method in a fresh subprocess (so peak RSS is that method's own):

  floor     the floor of a read-only pass: raw RunQuery responses (no decoding), the
            stream reopened after the last name received when it breaks or reaches its
            deadline (the emulator's stream cannot deliver 1,000,000 documents in 300 s)
  floor-1t  the same on the channel fsmigrate reads through (fsmigrate/firestore/channel.py:
            each message taken on the reading thread, not handed over by gRPC's spin
            thread): the cheapest read this client library can do
  stream    bare `for doc in collection.stream()` (fails at 1,000,000 documents: its
            deadline, then the client's own retry path raises)
  script    the old cleanup: list(collection.stream()), filter, WriteBatch deletes of 500,
            one after another, no archive
  client    the Firestore client's BulkWriter with default options on the legacy documents
  dry-run   `fsmigrate upgrade --dry-run` of migration 0001
  apply     `fsmigrate upgrade` of migration 0001 (archive, preconditions, journal)
  dry-run-0, apply-0
            the same without 0001's prefix-key declaration: every processor's survivor
            kept until the scan ends (how 0001 ran before issue 24)

and prints median docs/s (documents in the collection / seconds), peak RSS (the method's
own: VmHWM, see bench/peak.py), the CPU seconds of the method's process (cpu s: all its
threads) and of the emulator's processes while it ran (emu cpu s), and the ratios
the documentation quotes (dry-run and apply against the floor), as a table and (with
--json) as JSON. With 2 cores shared by the client and the emulator, a method cannot take
less than (cpu s + emu cpu s) / 2 seconds: the `*_two_core_bound_vs_floor_1t` ratios are
that bound over the floor's time, the least ratio this machine allows the method. --rss measures how peak RSS grows with N for dry-run and apply, with
and without the prefix keys.
A method that fails is recorded as failed (with its last error line), not retried.

The documents are seeded again only after a method that wrote (script, client, apply),
so at 1,000,000 documents one seeding serves the read-only methods before them:

    .venv/bin/python bench/cleanup.py --docs 1000000 --reps 1 \
        --methods floor,dry-run,apply --json bench/results/cleanup-1m.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak import own_peak_mb  # noqa: E402  (VmHWM: not the driver's memory at fork)

METHODS = [
    "floor",
    "floor-1t",
    "stream",
    "script",
    "client",
    "dry-run",
    "apply",
    "dry-run-0",
    "apply-0",
]
WARM_UP = 100_000  # documents read after seeding, before the first measurement
WRITES = {
    "script",
    "client",
    "apply",
    "apply-0",
}  # methods after which the documents are seeded again
COLLECTION = "processor_heartbeats"


# ---- data ------------------------------------------------------------------------------


def documents(total: int, seed: int = 11):
    """(id, data): ~3% canonical processors, ~97% legacy documents of both formats."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    processors = [f"Synthetic{i:04d}Processor" for i in range(max(30, total * 3 // 100))]
    for name in processors:
        yield (
            name,
            {
                "processor_name": name,
                "status": "running",
                "last_heartbeat": now - dt.timedelta(seconds=rng.uniform(5, 600)),
                "service": "bench",
            },
        )
    for n in range(total - len(processors)):
        name = processors[n % len(processors)]
        run_id = f"{n:08x}"
        beat = now - dt.timedelta(seconds=rng.uniform(700, 4 * 86400))
        doc_id = (
            f"{name}_{beat.date().isoformat()}_{run_id}" if n % 4 == 3 else f"{name}_None_{run_id}"
        )
        yield (
            doc_id,
            {
                "processor_name": name,
                "status": rng.choice(["running", "completed"]),
                "last_heartbeat": beat,
                "run_id": run_id,
                "data_date": None,
                "progress": {"rows": rng.randrange(50_000), "pct": rng.random() * 100},
                "service": "nba-phase3-analytics-processors",
            },
        )


def seed(project: str, total: int, threads: int = 4) -> None:
    """Write the documents in batches of 500, `threads` commits at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from google.cloud import firestore

    client = firestore.Client(project=project)
    with ThreadPoolExecutor(threads) as pool:
        pending = []
        batch, count = client.batch(), 0
        for doc_id, data in documents(total):
            batch.set(client.collection(COLLECTION).document(doc_id), data)
            count += 1
            if count == 500:
                pending.append(pool.submit(batch.commit))
                batch, count = client.batch(), 0
            if len(pending) >= 4 * threads:
                pending.pop(0).result()
        if count:
            pending.append(pool.submit(batch.commit))
        for future in pending:
            future.result()


# ---- the methods (each runs in its own process: `--worker METHOD`) ----------------------


def group_cpu_s(group: int) -> float:
    """User + system CPU seconds of the live processes of a process group (from /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ...
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


first_answer: list[float] = []  # seconds from each stream's request to its first document


def run_floor(
    project: str, limit: int = 0, deadline: float = 280.0, single_thread: bool = False
) -> int:
    """Every document as raw RunQuery responses, in name order; a stream that breaks or
    reaches its deadline (280 s, under the emulator's 300) is reopened after the last
    name received (a stream that delivered nothing gets twice the deadline). No decoding:
    the cheapest complete read the server allows. `single_thread`: on fsmigrate's channel
    (channel.py) instead of the client's."""
    from google.api_core import exceptions as gexc
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    from fsmigrate.firestore.connection import Channels, Connection

    client = firestore.Client(project=project)
    emulator = Connection(emulator_host=os.environ["FIRESTORE_EMULATOR_HOST"])
    api = Channels(emulator, project, "(default)").api if single_thread else client._firestore_api
    query = client.collection(COLLECTION).order_by(FieldPath.document_id())
    if limit:
        query = query.limit(limit)
    seen, last = 0, None
    while True:
        before = seen
        page = query if last is None else query.start_after({"__name__": client.document(last)})
        request, _, _ = page._prep_stream(retry=None)
        prefix = client._database_string + "/documents/"
        asked = time.perf_counter()
        try:
            for response in api.run_query(
                request=request, metadata=client._rpc_metadata, retry=None, timeout=deadline
            ):
                pb = response._pb
                if pb.HasField("document"):
                    if seen == before:
                        first_answer.append(time.perf_counter() - asked)
                    seen += 1
                    last = pb.document.name[len(prefix) :]
            return seen
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.InternalServerError):
            if seen == before:  # not one document before the deadline: give it longer
                deadline *= 2
            continue  # reopened after `last`


def run_stream(project: str) -> int:
    from google.cloud import firestore

    return sum(1 for _ in firestore.Client(project=project).collection(COLLECTION).stream())


def run_script(project: str) -> int:
    from google.cloud import firestore

    from fsmigrate.heartbeats import classify

    client = firestore.Client(project=project)
    docs = list(client.collection(COLLECTION).stream())
    bad = [d for d in docs if classify(d.id).is_legacy]
    for start in range(0, len(bad), 500):
        batch = client.batch()
        for doc in bad[start : start + 500]:
            batch.delete(doc.reference)
        batch.commit()
    return len(docs)


def run_client(project: str) -> int:
    from google.cloud import firestore

    from fsmigrate.heartbeats import classify

    client = firestore.Client(project=project)
    writer = client.bulk_writer()
    seen = 0
    for doc in client.collection(COLLECTION).stream():
        seen += 1
        if classify(doc.id).is_legacy:
            writer.delete(doc.reference)
    writer.close()
    return seen


SCRIPT = ROOT / "migrations" / "0001_normalize_processor_heartbeats.py"
DECLARATION = ("    prefix_keys=is_class_name,\n", "key_is_prefix = normalization.key_is_prefix\n")


def run_fsmigrate(project: str, dry_run: bool, extra: list[str], declared: bool = True) -> int:
    from fsmigrate.cli import cli

    with tempfile.TemporaryDirectory() as tmp:
        migrations = ROOT / "migrations"
        if not declared:  # 0001 without its prefix keys
            migrations = Path(tmp) / "migrations"
            migrations.mkdir()
            source = SCRIPT.read_text()
            for line in DECLARATION:
                assert line in source, line
                source = source.replace(line, "")
            (migrations / SCRIPT.name).write_text(source)
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
            "--report",
            f"{tmp}/report.json",
            *extra,
        ]
        if dry_run:
            args.append("--dry-run")
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            try:
                cli.main(args=args, standalone_mode=False)
            finally:
                sys.stdout = stdout
    return -1  # the caller knows N


def worker(method: str, project: str, extra: list[str], emulator_group: int) -> None:
    from google.cloud import firestore  # noqa: F401

    import fsmigrate.cli  # noqa: F401  (imports are not part of the measurement)

    start, cpu = time.perf_counter(), time.process_time()
    emulator_cpu = group_cpu_s(emulator_group)
    if method.startswith("floor"):
        run_floor(project, single_thread=method == "floor-1t")
    elif method == "stream":
        run_stream(project)
    elif method == "script":
        run_script(project)
    elif method == "client":
        run_client(project)
    else:
        run_fsmigrate(project, method.startswith("dry-run"), extra, not method.endswith("-0"))
    seconds = time.perf_counter() - start
    result = {
        "method": method,
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "emulator_cpu_s": group_cpu_s(emulator_group) - emulator_cpu,
        "rss_mb": own_peak_mb(),
    }
    if first_answer:
        result["first_answer_s"] = sum(first_answer)
    print(json.dumps(result))


# ---- the driver ---------------------------------------------------------------------------


_seeded: dict[str, int] = {}  # project -> documents in it, while no method wrote
_emulator_group = 0  # the emulator's process group (its pid), for its CPU seconds


def measure(method: str, project: str, docs: int, env: dict, extra: list[str]) -> dict:
    from fsmigrate.firestore import emulator

    if _seeded.get(project) != docs:
        emulator.reset(env["FIRESTORE_EMULATOR_HOST"], project)
        started = time.perf_counter()
        seed(project, docs)
        print(f"seeded {docs} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        # untimed: the first read after a seeding pays the emulator's warm-up (measured:
        # 11 s instead of 2.5 s for 5,000 documents), whichever method comes first
        run_floor(project, limit=min(docs, WARM_UP))
        _seeded[project] = docs
    if method in WRITES:
        _seeded.pop(project, None)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            method,
            "--project",
            project,
            "--emulator-group",
            str(_emulator_group),
            "--",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return {"method": method, "failed": lines[-1] if lines else f"exit {out.returncode}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["docs_per_s"] = docs / result["seconds"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--rss", default="", help="sizes for the RSS growth check, e.g. 10000,100000"
    )
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker")
    parser.add_argument("--project", default="bench")
    parser.add_argument("--emulator-group", type=int, default=0)
    parser.add_argument("extra", nargs="*", help="after --: extra options for fsmigrate upgrade")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.project, args.extra, args.emulator_group)
        return 0

    from fsmigrate.firestore import emulator

    global _emulator_group
    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    _emulator_group = emu.pid
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        methods = args.methods.split(",")
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for rep in range(args.reps):
            order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
            for method in order:
                result = measure(method, "bench", args.docs, env, args.extra)
                runs[method].append(result)
                if "failed" in result:
                    print(f"rep {rep + 1} {method:<8} FAILED: {result['failed']}", file=sys.stderr)
                    continue
                print(
                    f"rep {rep + 1} {method:<8} {result['seconds']:7.2f} s "
                    f"{result['docs_per_s']:9.0f} docs/s  {result['rss_mb']:6.1f} MB  "
                    f"cpu {result['cpu_s']:6.1f} s  emulator cpu {result['emulator_cpu_s']:6.1f} s",
                    file=sys.stderr,
                )
        summary: dict[str, dict] = {}
        for m, rs in runs.items():
            ok = [r for r in rs if "failed" not in r]
            summary[m] = (
                {
                    "median_docs_per_s": statistics.median(r["docs_per_s"] for r in ok),
                    "median_seconds": statistics.median(r["seconds"] for r in ok),
                    "peak_rss_mb": max(r["rss_mb"] for r in ok),
                    "median_cpu_s": statistics.median(r["cpu_s"] for r in ok),
                    "median_emulator_cpu_s": statistics.median(r["emulator_cpu_s"] for r in ok),
                    **(
                        {
                            "median_first_answer_s": statistics.median(
                                r["first_answer_s"] for r in ok
                            )
                        }
                        if all("first_answer_s" in r for r in ok)
                        else {}
                    ),
                    "runs": rs,
                }
                if ok
                else {"failed": rs[-1]["failed"], "runs": rs}
            )
        ratios = {}

        def ratio(name: str, a: str, b: str) -> None:
            if "median_seconds" in summary.get(a, {}) and "median_seconds" in summary.get(b, {}):
                ratios[name] = summary[a]["median_docs_per_s"] / summary[b]["median_docs_per_s"]

        def seconds_ratio(name: str, a: str, b: str) -> None:
            if "median_seconds" in summary.get(a, {}) and "median_seconds" in summary.get(b, {}):
                ratios[name] = summary[a]["median_seconds"] / summary[b]["median_seconds"]

        ratio("apply_vs_script", "apply", "script")
        ratio("apply_vs_client", "apply", "client")
        ratio("dry_run_vs_stream", "dry-run", "stream")
        seconds_ratio("dry_run_seconds_vs_floor", "dry-run", "floor")  # goal: at most 1.1
        seconds_ratio("apply_seconds_vs_floor", "apply", "floor")  # goal: at most 1.3
        seconds_ratio("dry_run_seconds_vs_floor_1t", "dry-run", "floor-1t")
        seconds_ratio("apply_seconds_vs_floor_1t", "apply", "floor-1t")
        seconds_ratio("floor_1t_seconds_vs_floor", "floor-1t", "floor")

        def two_core_bound(name: str, a: str, b: str) -> None:
            """(a's CPU + the emulator's CPU while a ran) / 2 cores, over b's seconds."""
            if "median_seconds" in summary.get(a, {}) and "median_seconds" in summary.get(b, {}):
                cpu = summary[a]["median_cpu_s"] + summary[a]["median_emulator_cpu_s"]
                ratios[name] = cpu / 2 / summary[b]["median_seconds"]

        two_core_bound("dry_run_two_core_bound_vs_floor_1t", "dry-run", "floor-1t")
        two_core_bound("apply_two_core_bound_vs_floor_1t", "apply", "floor-1t")
        rss = {}
        if args.rss:
            sizes = [int(s) for s in args.rss.split(",")]
            for method in ("dry-run", "apply", "dry-run-0", "apply-0"):
                rss[method] = {
                    str(n): measure(method, "bench", n, env, args.extra).get("rss_mb", -1.0)
                    for n in sizes
                }
        print(f"\nN = {args.docs} documents, {args.reps} repetitions, medians\n")
        print(
            f"{'method':<10}{'docs/s':>10}{'seconds':>10}{'peak RSS MB':>14}"
            f"{'cpu s':>9}{'emu cpu s':>11}{'first doc s':>13}"
        )
        for m, s in summary.items():
            if "failed" in s:
                print(f"{m:<10}  FAILED: {s['failed']}")
                continue
            print(
                f"{m:<10}{s['median_docs_per_s']:>10.0f}{s['median_seconds']:>10.2f}"
                f"{s['peak_rss_mb']:>14.1f}{s['median_cpu_s']:>9.1f}"
                f"{s['median_emulator_cpu_s']:>11.1f}"
                + (f"{s['median_first_answer_s']:>13.2f}" if "median_first_answer_s" in s else "")
            )
        print()
        for name, value in ratios.items():
            print(f"{name:<36} {value:6.2f}x")
        for method, sizes in rss.items():
            values = list(sizes.values())
            print(
                f"peak RSS {method:<8} "
                + "  ".join(f"N={n}: {v:.1f} MB" for n, v in sizes.items())
                + f"  (growth {values[-1] - values[0]:+.1f} MB)"
            )
        report = {
            "docs": args.docs,
            "reps": args.reps,
            "summary": summary,
            "ratios": ratios,
            "rss_growth": rss,
            "fsmigrate_options": args.extra,
        }
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(report, indent=2))
        return 0
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
