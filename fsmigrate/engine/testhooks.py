"""Test-only fault points, driven by environment variables; no effect when they are unset.

FSMIGRATE_TEST_CRASH="<point>:<batch>"  SIGKILL this process when it reaches that point
                                          (points: before-commit, after-commit with the
                                          batch number; before-marker, after-marker with 0;
                                          import-batch with the number of batch files a
                                          Beam journal's import has recorded;
                                          journal-published with 0: a Beam journal's
                                          record is in the database, nothing journaled).
FSMIGRATE_TEST_CRASH_GROUP="<point>:<batch>"  the same, SIGKILL to this process's whole
                                          process group (a Beam coordinator with its
                                          workers: a machine that dies).
FSMIGRATE_TEST_PAUSE="<point>:<seconds>"  sleep at that point (points: after-lock).
The crash tests use them to stop a real apply at an exact place.
"""

from __future__ import annotations

import os
import signal
import time


def reached(point: str, batch: int = 0) -> None:
    crash = os.environ.get("FSMIGRATE_TEST_CRASH")
    if crash and crash == f"{point}:{batch}":
        os.kill(os.getpid(), signal.SIGKILL)
    group = os.environ.get("FSMIGRATE_TEST_CRASH_GROUP")
    if group and group == f"{point}:{batch}":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    pause = os.environ.get("FSMIGRATE_TEST_PAUSE")
    if pause and pause.startswith(point + ":"):
        time.sleep(float(pause.split(":", 1)[1]))
