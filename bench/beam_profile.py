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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--method", default="beam-2", choices=["beam-2", "each-2"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()

    import fsmigrate.cli  # noqa: F401  (imports are not part of the profiles)
    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    parts = [f"N = {args.docs} documents, {args.method}, one run each\n"]
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
