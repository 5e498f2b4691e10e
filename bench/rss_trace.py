"""Trace: a run's resident memory over time, to tell a growing structure from a spike.

    .venv/bin/python bench/rss_trace.py --docs 1000000 --method dry-run [--every 0.2]

Starts its own emulator, seeds N heartbeat documents (as bench/cleanup.py), runs one
method of bench/cleanup.py in its own process and reads its VmRSS every `--every`
seconds. Prints the peak (VmHWM) and, for the time after the emulator's first answer
(the RSS leaves its start-up level), the lowest and highest RSS, the least-squares
slope in MB per minute, and the samples at each tenth of the run: a structure kept per
document grows through the run; a spike comes and goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cleanup import run_floor, seed  # noqa: E402
from peak import hwm_mb, rss_mb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--method", default="dry-run")
    parser.add_argument("--every", type=float, default=0.2)
    args = parser.parse_args()

    from fsmigrate.firestore import emulator

    emu = emulator.start(log_dir=Path(tempfile.mkdtemp()))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emu.host_port}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host_port
    try:
        seed("bench", args.docs)
        run_floor("bench", limit=min(args.docs, 100_000))  # the emulator's warm-up
        cleanup = str(ROOT / "bench" / "cleanup.py")
        worker = subprocess.Popen(
            [sys.executable, cleanup, "--worker", args.method, "--project", "bench"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        started, samples, peak = time.perf_counter(), [], 0.0
        while worker.poll() is None:
            now = rss_mb(worker.pid)
            peak = max(peak, hwm_mb(worker.pid) or 0.0)
            if now is not None:
                samples.append((time.perf_counter() - started, now))
            time.sleep(args.every)
        result = json.loads(worker.communicate()[0].strip().splitlines()[-1])
    finally:
        emulator.stop(emu.pid)
    # after start-up: from the first sample 5 MB above the level it waited for the emulator at
    waiting = samples[len(samples) // 20][1] if samples else 0.0
    first = next((i for i, (_, r) in enumerate(samples) if r > waiting + 5), len(samples))
    running = samples[first:]
    print(f"{args.method}, {args.docs} documents: {result['seconds']:.1f} s, VmHWM {peak:.1f} MB")
    if len(running) >= 2:
        times, values = [t for t, _ in running], [r for _, r in running]
        slope = statistics.linear_regression(times, values).slope * 60
        print(
            f"after the first answer ({times[0]:.1f} s on): RSS {min(values):.1f} to "
            f"{max(values):.1f} MB, slope {slope:+.2f} MB per minute"
        )
    for t, r in samples[:: max(1, len(samples) // 10)]:
        print(f"{t:7.1f} s {r:7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
