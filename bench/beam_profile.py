"""Where a Beam run's CPU goes: a profile of the coordinator and one of the workers.

    .venv/bin/python bench/beam_profile.py --docs 20000 [--method beam-2|each-2] [--top 25]

Starts its own Firestore emulator, seeds N heartbeat documents (the data of
bench/cleanup.py) and applies migration 0001 (`beam-2`: keyed, prefix keys) or the same
deletes per document (`each-2`) twice, re-seeded between, each under cProfile in this
process:

  coordinator  `--runner beam --workers 2` as users run it (the DirectRunner's worker
               processes are not in this profile): the split, Beam's runner, the
               journal's import into the state file, the notes
  workers      the same with `direct_running_mode=in_memory` and one worker: the workers'
               DoFns run in this process; the part under their `process` methods is the
               workers' cost (scan, plan, journal, commit)

    .venv/bin/python bench/beam_profile.py --phases 10000,40000

measures instead, without a profiler (whose cost per call distorts code made of many small
calls), the CPU of each part at each size, one run each: the workers' processes
together, and in the coordinator the split, the journal's import (reading the batch
files; recording operations and outcomes in the state file) and the rest; for the local
runner its recording in the state file and the rest; then each part's cost per extra
1,000 documents.

    .venv/bin/python bench/beam_profile.py --idle 1,11

measures what Beam's own threads use while its workers wait: a two-worker pipeline whose
one step sleeps, for each duration, and the CPU per second of waiting.

Each profile is printed as its total CPU, its CPU by area (fsmigrate's modules, JSON,
SQLite, gRPC and protobuf, Beam, ...: the functions' own time) and the functions with the
most own time. The local runner's profile is printed the same way for comparison.

The timer is the process's CPU time (time.process_time), so waiting costs nothing; the
profile follows the main thread only, so the CPU of the process's other threads (gRPC's,
a commit pool's) shows up in whatever the main thread was doing meanwhile, mostly
waiting on a lock ("threads, waits").
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from beam import EACH  # noqa: E402  (the per-document form of the same deletes)
from cleanup import WARM_UP, run_floor, seed  # noqa: E402

AREAS = [  # (area, a test on the function's file or built-in name), first match wins
    ("fsmigrate.beam", lambda f: "/fsmigrate/beam/" in f),
    ("fsmigrate.state", lambda f: "/fsmigrate/state/" in f),
    ("fsmigrate.engine", lambda f: "/fsmigrate/engine/" in f),
    ("fsmigrate.firestore", lambda f: "/fsmigrate/firestore/" in f),
    ("fsmigrate (other)", lambda f: "/fsmigrate/" in f or "/migrations/" in f),
    ("sqlite3", lambda f: "sqlite3" in f),
    ("json", lambda f: "/json/" in f or "_json" in f),
    (
        "base64, zlib, hashlib",
        lambda f: any(m in f for m in ("base64", "zlib", "hashlib", "binascii")),
    ),
    (
        "files (open, write, fsync, rename)",
        lambda f: any(m in f for m in ("io.", "posix.", "fsync", "'open'", "_io")),
    ),
    ("gRPC", lambda f: "grpc" in f),
    ("protobuf, proto-plus", lambda f: "protobuf" in f or "/proto/" in f or "upb" in f),
    ("google.cloud.firestore, api_core", lambda f: "/google/" in f),
    ("apache_beam", lambda f: "apache_beam" in f),
    ("pickle, dill", lambda f: "pickle" in f or "dill" in f),
    ("threads, waits", lambda f: "threading" in f or "acquire" in f or "queue" in f),
]


def area(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for label, test in AREAS:
        if test(where):
            return label
    return "other"


def report(title: str, prof: cProfile.Profile, top: int, dofns: bool = False) -> str:
    """The profile as text: total, by area, top functions by own and by cumulative time.
    `dofns`: also the cumulative time under the workers' DoFns (their `process`)."""
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values())
    out = io.StringIO()
    out.write(f"\n=== {title}: {total:.2f} s of CPU in the profile\n")
    if dofns:
        inside = sum(
            value[3]
            for key, value in raw.items()
            if key[0].endswith("fsmigrate/beam/pipeline.py") and key[2] == "process"
        )
        out.write(f"    under the workers' DoFns (process): {inside:.2f} s cumulative\n")
    by_area: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, tt, _, _) in raw.items():
        by_area[area(filename, name)] += tt
    out.write("    own time by area:\n")
    for label, seconds in sorted(by_area.items(), key=lambda kv: -kv[1]):
        out.write(f"      {label:<38}{seconds:8.2f} s {100 * seconds / total:5.1f}%\n")
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    out.write("\n".join(line for line in text.getvalue().splitlines() if line.strip()) + "\n")
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
    out.write("\n".join(line for line in text.getvalue().splitlines() if line.strip()) + "\n")
    return out.getvalue()


def run_once(method: str, docs: int, host: str, workers: int = 2, *extra: str) -> cProfile.Profile:
    from fsmigrate.cli import cli
    from fsmigrate.firestore import emulator

    emulator.reset(host, "bench")
    seed("bench", docs)
    run_floor("bench", limit=min(docs, WARM_UP))
    with tempfile.TemporaryDirectory() as tmp:
        migrations = ROOT / "migrations"
        if method.startswith("each"):
            migrations = Path(tmp) / "migrations"
            migrations.mkdir()
            (migrations / "0001_delete_legacy.py").write_text(EACH)
        runner = [] if method == "local" else ["--runner", "beam", "--workers", str(workers)]
        args = [
            "--project", "bench", "--state", f"{tmp}/state.db", "--migrations", str(migrations),
            "upgrade", "--quiet", "--format", "json", *runner, *extra,
        ]  # fmt: skip
        prof = cProfile.Profile(time.process_time)  # CPU, not wall: waits cost nothing
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            prof.enable()
            try:
                cli.main(args=args, standalone_mode=False)
            finally:
                prof.disable()
                sys.stdout = stdout
    return prof


class Sleep:  # a DoFn that only waits (pickled by reference: a module-level class)
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, element: int) -> int:
        time.sleep(self.seconds)
        return element


def idle(seconds: list[float]) -> str:
    """The CPU of a two-worker DirectRunner pipeline whose one step only sleeps, for each
    duration: what Beam's own threads use while the workers wait."""
    import resource

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    out = io.StringIO()
    found = []
    for wait in seconds:
        flags = ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]
        flags += ["--direct_num_workers=2", "--default_sdk_harness_log_level=WARNING"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        own, wall = time.process_time(), time.perf_counter()
        with beam.Pipeline(options=PipelineOptions(flags)) as p:
            _ = p | beam.Create([1, 2]) | beam.Reshuffle() | beam.Map(Sleep(wait))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (time.process_time() - own) + (after.ru_utime - before.ru_utime)
        cpu += after.ru_stime - before.ru_stime
        found.append((wait, time.perf_counter() - wall, cpu))
        out.write(f"sleep {wait:5.1f} s: wall {found[-1][1]:6.2f} s, CPU {cpu:5.2f} s\n")
    (w0, _, c0), (w1, _, c1) = found[0], found[-1]
    out.write(f"CPU per second of waiting: {(c1 - c0) / (w1 - w0):.3f} s\n")
    return out.getvalue()


class Parts:
    """The CPU of named parts of this process (the thread that calls them), and of the
    processes it reaped meanwhile (the DirectRunner's workers)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.thread_time() - started

        setattr(owner, attr, timed)


def phases(method: str, docs: int, host: str) -> dict[str, float]:
    """One run of `method` on `docs` documents in a child process: CPU seconds by part."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--phase-run", f"{method}:{docs}"],
        env={**os.environ, "FIRESTORE_EMULATOR_HOST": host},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def phase_run(method: str, docs: int) -> None:
    import json
    import resource

    from fsmigrate.beam import journal, workfiles
    from fsmigrate.cli import cli
    from fsmigrate.firestore import emulator
    from fsmigrate.firestore.store import Store
    from fsmigrate.state.operations import Operations

    emulator.reset(os.environ["FIRESTORE_EMULATOR_HOST"], "bench")
    seed("bench", docs)
    run_floor("bench", limit=min(docs, WARM_UP))
    parts = Parts()
    parts.wrap(Store, "split", "coordinator: split")
    parts.wrap(journal, "import_batches", "coordinator: import")
    parts.wrap(workfiles, "read_batch", "coordinator: import: reading batch files")
    parts.wrap(Operations, "record_ops", "state file: recording operations")
    parts.wrap(Operations, "settle_ops", "state file: recording outcomes")
    with tempfile.TemporaryDirectory() as tmp:
        runner = [] if method == "local" else ["--runner", "beam", "--workers", "2"]
        args = [
            "--project", "bench", "--state", f"{tmp}/state.db", "--migrations",
            str(ROOT / "migrations"), "upgrade", "--quiet", "--format", "json", *runner,
        ]  # fmt: skip
        started, everything = time.thread_time(), time.process_time()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            try:
                cli.main(args=args, standalone_mode=False)
            finally:
                sys.stdout = stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = dict(parts.cpu)
    cpu["this process (main thread)"] = time.thread_time() - started
    cpu["this process (all threads)"] = time.process_time() - everything
    cpu["workers' processes"] = (after.ru_utime - children.ru_utime) + (
        after.ru_stime - children.ru_stime
    )
    print(json.dumps(cpu))


def print_phases(sizes: list[int], host: str) -> str:
    low, high = min(sizes), max(sizes)
    found = {m: {n: phases(m, n, host) for n in sizes} for m in ("local", "beam-2")}
    out = io.StringIO()
    out.write(f"CPU seconds by part, one run each; per extra 1,000 documents ({low} -> {high})\n")
    for method, by_size in found.items():
        out.write(f"\n{method}\n")
        names = sorted({k for v in by_size.values() for k in v})
        for name in names:
            a, b = by_size[low].get(name, 0.0), by_size[high].get(name, 0.0)
            slope = (b - a) / ((high - low) / 1000)
            out.write(f"  {name:<48}{a:8.2f}{b:8.2f}{slope:10.4f} s/1k\n")
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--method", default="beam-2", choices=["beam-2", "each-2"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--phases", help="sizes: the CPU by part instead, e.g. 10000,40000")
    parser.add_argument("--phase-run", help=argparse.SUPPRESS)
    parser.add_argument("--idle", help="seconds: the CPU of an idle pipeline, e.g. 1,11")
    args = parser.parse_args()
    if args.idle:
        text = idle([float(n) for n in args.idle.split(",")])
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0
    if args.phase_run:
        method, docs = args.phase_run.split(":")
        phase_run(method, int(docs))
        return 0

    import fsmigrate.cli  # noqa: F401  (imports are not part of the profiles)
    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    parts = [f"N = {args.docs} documents, {args.method}, one run each\n"]
    if args.phases:
        try:
            parts = [print_phases([int(n) for n in args.phases.split(",")], emu.host_port)]
        finally:
            emulator.stop(emu.pid)
        print(parts[0])
        if args.out:
            Path(args.out).write_text(parts[0])
        return 0
    try:
        import apache_beam  # noqa: F401

        started = time.process_time()
        local = run_once("local", args.docs, emu.host_port)
        parts.append(report("local runner (for comparison)", local, args.top))
        coordinator = run_once(args.method, args.docs, emu.host_port)
        parts.append(report("coordinator (workers in their own processes)", coordinator, args.top))
        in_memory = ("--beam-option", "direct_running_mode=in_memory")
        workers = run_once(args.method, args.docs, emu.host_port, 1, *in_memory)
        title = "coordinator and one worker in one process (DirectRunner in_memory)"
        parts.append(report(title, workers, args.top, dofns=True))
        parts.append(f"\nprofiling took {time.process_time() - started:.1f} s of CPU\n")
    finally:
        emulator.stop(emu.pid)
    text = "".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
