"""Benchmark: what the state file costs per archived document, against the old layout.

    .venv/bin/python bench/archive_size.py [--legacy 5000] [--reps 3] [--baseline 6462d0f]
                                           [--json FILE]

Starts its own Firestore emulator. For this checkout and for the baseline (the last
version with the uncompressed layout, state schema 3, exported from git into a temporary
directory and run with its own migrations), it seeds the processor_heartbeats incident
with N legacy documents (`fsmigrate.heartbeats.incident`), runs the usual
`fsmigrate upgrade --dry-run` then `fsmigrate upgrade` in a fresh process with a fresh
state file, and prints: the state file's size (with its -wal and -shm files, after the
process ended), the archived documents' own bytes (their serialized protobufs, read back
from that state file), the ratio of the two, bytes per archived document, and how long the
dry-run and the apply took (medians of --reps, the versions taking turns). The goal: at
most 2x the archived documents' bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "6462d0f"  # state schema 3: before-images, writes and labels stored as they are
PROJECT = "bench-archive"


# ---- the worker (runs one version of fsmigrate in its own process) --------------------------


def worker(state: Path, migrations: Path, project: str) -> None:
    from fsmigrate.cli import cli
    from fsmigrate.state.database import State

    seconds = {}
    for mode, extra in (("dry_run", ["--dry-run"]), ("apply", [])):
        start = time.perf_counter()
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            try:
                cli.main(
                    args=[
                        "--project",
                        project,
                        "--state",
                        str(state),
                        "--migrations",
                        str(migrations),
                        "upgrade",
                        "--quiet",
                        "--format",
                        "json",
                        *extra,
                    ],
                    standalone_mode=False,
                )
            finally:
                sys.stdout = stdout
        seconds[mode] = time.perf_counter() - start
    db = State.open_readonly(state)
    apply = next(r for r in db.runs() if r["mode"] == "apply")
    images = [len(op["before"]) for op in db.ops(apply["id"]) if op["before"]]
    db.close()
    print(
        json.dumps(
            {
                "archived_docs": len(images),
                "archived_bytes": sum(images),
                "operations": apply["planned"],
                "seconds": seconds,
            }
        )
    )


# ---- the driver -----------------------------------------------------------------------------


def file_bytes(state: Path) -> int:
    return sum(
        p.stat().st_size for p in (state, Path(f"{state}-wal"), Path(f"{state}-shm")) if p.exists()
    )


def measure(name: str, code: Path, migrations: Path, legacy: int, env: dict) -> dict:
    from google.cloud import firestore

    from fsmigrate.firestore import emulator
    from fsmigrate.heartbeats import incident

    emulator.reset(env["FIRESTORE_EMULATOR_HOST"], PROJECT)
    incident.seed(firestore.Client(project=PROJECT), legacy=legacy)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.db"
        site = sysconfig.get_paths()["purelib"]
        # -S and a neutral directory: the baseline's own package, not the editable install
        out = subprocess.run(
            [
                sys.executable,
                "-S",
                __file__,
                "--worker",
                str(state),
                "--migrations",
                str(migrations),
            ],
            env={**env, "PYTHONPATH": f"{code}{os.pathsep}{site}"},
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"{name}: the worker failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["state_bytes"] = file_bytes(state)
    result["name"] = name
    result["ratio"] = result["state_bytes"] / result["archived_bytes"]
    result["bytes_per_doc"] = result["state_bytes"] / result["archived_docs"]
    return result


def median(found: list[dict]) -> dict:
    """The last repetition's sizes (they differ only by timestamps' varints), the median
    times of all of them."""
    out = dict(found[-1])
    out["seconds"] = {
        mode: statistics.median(r["seconds"][mode] for r in found) for mode in ("dry_run", "apply")
    }
    out["sizes"] = [r["state_bytes"] for r in found]
    return out


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "fsmigrate", "migrations"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legacy", type=int, default=5000, help="legacy documents to seed")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians of times)")
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help="git revision of the old layout to compare with ('' for none)",
    )
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--migrations", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), Path(args.migrations), PROJECT)
        return 0
    sys.path.insert(0, str(ROOT))
    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        with tempfile.TemporaryDirectory() as old:
            variants = [("this checkout", ROOT, ROOT / "migrations")]
            if args.baseline:
                code = export(args.baseline, Path(old))
                variants.append((f"schema 3 ({args.baseline})", code, code / "migrations"))
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
            for rep in range(args.reps):
                turn = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for name, code, migrations in turn:
                    runs[name].append(measure(name, code, migrations, args.legacy, env))
            results = [median(found) for found in runs.values()]
    finally:
        emulator.stop(emu.pid)
    print(
        f"\nheartbeat cleanup, {args.legacy:,} legacy documents: upgrade --dry-run, then "
        f"upgrade; times: medians of {args.reps}\n"
    )
    print(
        f"{'version':<22}{'state file':>12}{'archived':>12}{'ratio':>8}{'bytes/doc':>11}"
        f"{'dry-run s':>11}{'apply s':>9}"
    )
    for r in results:
        print(
            f"{r['name']:<22}{r['state_bytes']:>12,}{r['archived_bytes']:>12,}"
            f"{r['ratio']:>7.2f}x{r['bytes_per_doc']:>11,.0f}{r['seconds']['dry_run']:>11.2f}"
            f"{r['seconds']['apply']:>9.2f}"
        )
    summary = {"legacy": args.legacy, "reps": args.reps, "results": results, "goal_ratio": 2.0}
    if len(results) == 2:
        new, old_ = results
        summary["size_vs_baseline"] = new["state_bytes"] / old_["state_bytes"]
        summary["apply_time_vs_baseline"] = new["seconds"]["apply"] / old_["seconds"]["apply"]
        print(
            f"\nstate file vs {old_['name']}: {summary['size_vs_baseline']:.2f}x; apply time "
            f"{summary['apply_time_vs_baseline']:.2f}x; documents archived: "
            f"{new['archived_docs']:,} and {old_['archived_docs']:,}"
        )
    print(
        f"goal: ratio <= 2.0x -> {'met' if results[0]['ratio'] <= 2.0 else 'NOT met'} "
        f"({results[0]['ratio']:.2f}x)"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
