"""Hooks: functions told when a run starts, finishes, fails or is stopped.

A hook is a callable `hook(event, run)`: `event` is one of `EVENTS`, `run` the run's
record as `RunResult.to_json()` gives it (for `start`, as recorded so far). Hooks are
found through the entry-point group `fsmigrate.hooks`; another distribution registers
its own in its metadata:

    [project.entry-points."fsmigrate.hooks"]
    pager = "mypkg.hooks:pager"

A hook never changes a run's outcome and never holds it up for long: each call runs on a
thread of its own and is given `timeout` seconds (FSMIGRATE_HOOK_TIMEOUT, default 10); a
hook that raises, or has not returned by then, is reported (a note on the run, and a
warning on the command's output) and the run goes on. A hook that cannot even be loaded
is reported the same way.

The built-in `webhook` posts a Slack-compatible JSON summary (`text`, plus the run under
`fsmigrate`) to FSMIGRATE_WEBHOOK_URL when it is set, for the events in
FSMIGRATE_WEBHOOK_EVENTS (default: finish,fail,stop).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Optional

from fsmigrate.errors import UsageError
from fsmigrate.times import seconds_from_env

GROUP = "fsmigrate.hooks"
START, FINISH, FAIL, STOP = "start", "finish", "fail", "stop"
EVENTS = (START, FINISH, FAIL, STOP)
DEFAULT_TIMEOUT = 10.0
TIMEOUT_ENV = "FSMIGRATE_HOOK_TIMEOUT"
WEBHOOK_ENV = "FSMIGRATE_WEBHOOK_URL"
WEBHOOK_EVENTS_ENV = "FSMIGRATE_WEBHOOK_EVENTS"
WEBHOOK_DEFAULT_EVENTS = (FINISH, FAIL, STOP)

Hook = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Problem:
    """A hook that failed, hung or could not be loaded."""

    hook: str
    event: str
    what: str

    def describe(self) -> str:
        return f"hook {self.hook} on {self.event}: {self.what}"


def timeout_from_env(environ: Optional[Mapping[str, str]] = None) -> float:
    return seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT, environ)


class Hooks:
    """The hooks of one command, called with a bounded time each."""

    def __init__(
        self,
        hooks: Sequence[tuple[str, Hook]] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        broken: Sequence[Problem] = (),
    ) -> None:
        self.hooks = list(hooks)
        self.timeout = timeout
        self._broken = list(broken)  # reported with the first event

    @classmethod
    def load(cls, timeout: Optional[float] = None) -> Hooks:
        """The hooks registered in the entry-point group `fsmigrate.hooks`."""
        hooks: list[tuple[str, Hook]] = []
        broken: list[Problem] = []
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            try:
                fn = ep.load()
            except Exception as exc:
                broken.append(Problem(ep.name, "load", f"{type(exc).__name__}: {exc}"))
                continue
            if not callable(fn):
                broken.append(Problem(ep.name, "load", f"{ep.value} is not callable"))
                continue
            hooks.append((ep.name, fn))
        return cls(hooks, timeout=timeout_from_env() if timeout is None else timeout, broken=broken)

    @property
    def pending_problems(self) -> bool:
        """True while hooks that could not be loaded are still to be reported."""
        return bool(self._broken)

    def call(self, event: str, run: dict[str, Any]) -> list[Problem]:
        """Call every hook with (event, run); the ones that failed or hung. The hooks run
        at once, each on its own thread; this returns after at most `timeout` seconds."""
        problems, self._broken = self._broken, []
        if not self.hooks:
            return problems
        done: dict[str, Optional[str]] = {}
        threads = []
        for name, fn in self.hooks:
            thread = threading.Thread(
                target=_call,
                args=(fn, event, dict(run), name, done),
                daemon=True,
                name=f"fsmigrate-hook-{name}",
            )
            thread.start()
            threads.append((name, thread))
        deadline = time.monotonic() + self.timeout
        for name, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                problems.append(
                    Problem(name, event, f"did not return within {self.timeout:g} s (left running)")
                )
            elif done.get(name):
                problems.append(Problem(name, event, str(done[name])))
        return problems


def _call(fn: Hook, event: str, run: dict[str, Any], name: str, done: dict) -> None:
    try:
        fn(event, run)
        done[name] = None
    except BaseException as exc:  # reported, never raised into the run
        done[name] = f"raised {type(exc).__name__}: {exc}"


# ---- the built-in webhook ----------------------------------------------------------------


def summary(event: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible message about a run: `text` (mrkdwn), and the run's record."""
    verb = {
        START: "started",
        FINISH: "finished",
        FAIL: "FAILED",
        STOP: "was stopped",
    }.get(event, event)
    target = f"{run.get('project')}/{run.get('database')}"
    text = (
        f"fsmigrate: {run.get('mode')} of migration {run.get('revision')} "
        f"({run.get('description') or 'no description'}) on {target} {verb}"
        f" — run {run.get('run_id')}, by {run.get('operator')}@{run.get('host')}"
    )
    if event != START:
        text += (
            f"; {run.get('committed', 0)} committed, {run.get('skipped', 0)} skipped, "
            f"{run.get('planned', 0)} planned"
        )
    if run.get("error"):
        text += f"; {run['error']}"
    return {"text": text, "fsmigrate": {"event": event, "run": dict(run)}}


def webhook_events(environ: Optional[Mapping[str, str]] = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    text = env.get(WEBHOOK_EVENTS_ENV)
    if not text:
        return WEBHOOK_DEFAULT_EVENTS
    events = tuple(e.strip() for e in text.split(",") if e.strip())
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise UsageError(
            f"{WEBHOOK_EVENTS_ENV}: unknown event(s) {', '.join(unknown)}; "
            f"events are {', '.join(EVENTS)}"
        )
    return events


def post(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST `payload` as JSON; an HTTP error status raises."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{WEBHOOK_ENV} must be an http(s) URL, got {url!r}")
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        answer.read()


def webhook(event: str, run: dict[str, Any]) -> None:
    """The built-in hook: post `summary` to FSMIGRATE_WEBHOOK_URL (when set)."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url or event not in webhook_events():
        return
    post(url, summary(event, run), timeout_from_env())
