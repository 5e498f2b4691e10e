"""Test-only fault points, driven by environment variables; no effect when they are unset.

FSMIGRATE_TEST_CRASH="<point>:<batch>"  SIGKILL this process when it reaches that point
                                          (points: before-commit, after-commit with the
                                          batch number; before-marker, after-marker with 0).
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
    pause = os.environ.get("FSMIGRATE_TEST_PAUSE")
    if pause and pause.startswith(point + ":"):
        time.sleep(float(pause.split(":", 1)[1]))
