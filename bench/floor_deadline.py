"""Check: the `floor` read of bench/cleanup.py survives its stream's deadline.

    .venv/bin/python bench/floor_deadline.py --docs 20000 --deadline 5

Starts its own emulator, seeds N heartbeat documents, and reads them with `run_floor`
whose stream deadline is `--deadline` seconds (instead of 280): the stream is cut many
times and reopened after the last name received each time. Prints how many documents it
read (must be N: no gap, no duplicate) and in how many seconds, next to a bare
`collection.stream()` given the same deadline (which fails).
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--deadline", type=float, default=5.0)
    args = parser.parse_args()

    from google.cloud import firestore

    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        seed("bench", args.docs)
        run_floor("bench", limit=args.docs)  # untimed warm-up
        start = time.perf_counter()
        read = run_floor("bench", deadline=args.deadline)
        print(
            f"floor, {args.deadline} s stream deadline: {read} of {args.docs} documents "
            f"in {time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        try:
            client = firestore.Client(project="bench")
            n = sum(1 for _ in client.collection(COLLECTION).stream(timeout=args.deadline))
            print(f"bare stream(), same deadline: {n} documents")
        except Exception as exc:  # what the client does at its deadline
            line = str(exc).splitlines()[0][:150]
            print(
                f"bare stream(), same deadline: failed after "
                f"{time.perf_counter() - start:.1f} s: {type(exc).__name__}: {line}"
            )
        return 0 if read == args.docs else 1
    finally:
        emulator.stop(emu.pid)


if __name__ == "__main__":
    sys.exit(main())
