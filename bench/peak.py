"""Peak resident memory of a process and of the processes it starts, for the benchmarks.

Not `resource.getrusage(...).ru_maxrss`: on Linux a process inherits in it the resident
size its parent had when it forked (a worker started by a driver holding 100 MB reports
at least 100 MB, whatever it uses itself), and RUSAGE_CHILDREN has the same flaw one
level down. VmHWM in /proc/PID/status is the peak of the process's own memory since its
exec.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path


def hwm_mb(pid: int | str = "self") -> float | None:
    """VmHWM of a process in MB; None once it has gone (or without /proc)."""
    return status_mb(pid, "VmHWM")


def rss_mb(pid: int | str = "self") -> float | None:
    """VmRSS (resident now) of a process in MB; None once it has gone."""
    return status_mb(pid, "VmRSS")


def status_mb(pid: int | str, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def own_peak_mb() -> float:
    """This process's peak resident memory since its exec (ru_maxrss without /proc)."""
    found = hwm_mb()
    return found if found is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _descendants(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid]
        found += kids
        todo += kids
    return found


class ChildrenPeak:
    """The largest peak resident memory of any process this one starts (and theirs), by
    reading their VmHWM every `interval` seconds on a thread while the block runs; a
    process that lives less than `interval` may be missed."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.interval):
            for pid in _descendants(me):
                mb = hwm_mb(pid)
                if mb is not None:
                    self.peaks[pid] = max(mb, self.peaks.get(pid, 0.0))

    def __enter__(self) -> ChildrenPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def largest_mb(self) -> float:
        return max(self.peaks.values(), default=0.0)
