"""The options of a writing command as one typed object, checked once (pure).

`RunOptions` is what a caller gives `api.upgrade`, `api.rerun`, `api.apply_plan` and
`api.restore` (and what a config file's run keys give `api.Config.run`): every field is
optional, None meaning "not said here". Each value is checked when the object is made
(its type and range, the runner's name), so a bad option is a UsageError (exit 2) before
anything is read or written.

A command resolves its options once, each from the first that says it (the order of
docs/team-workflow.md): the call's `RunOptions`, then the config's (a config file's
environment, its defaults), then fsmigrate's built-in default. The result is a
`ResolvedOptions`, whose fields are all concrete; `as_of` becomes the instant the plans
read at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Union

from fsmigrate import config as config_file
from fsmigrate.errors import UsageError
from fsmigrate.firestore.store import VERSIONS_KEPT, VERSIONS_KEPT_PITR
from fsmigrate.times import parse_instant, rfc3339

AsOf = Union[None, str, dt.datetime]


@dataclass(frozen=True)
class RunOptions:
    """How a writing command runs; None: from the config, else fsmigrate's default.

    - `batch_size` (1-500), `batch_bytes`, `concurrency` (batches committed at once);
    - traffic: `max_rate` (a hard cap, operations per second), `ramp` (default on
      against a real project, off on the emulator), `ramp_start` (where the ramp starts,
      default 500 ops/s);
    - `max_skip_ratio` (0 to 1): stop the run when more than that share of its last 1,000
      operations were skipped;
    - where it runs: `runner` ("local" or "beam"), `workers` (DirectRunner processes),
      `beam_options` (pipeline options, e.g. `{"runner": "DataflowRunner"}`);
    - `as_of`: when the plans read the database (an RFC 3339 time, an age like "30m", or
      a datetime).

    Made with a value out of range, of the wrong type or an unknown runner: UsageError.

    Args:
        batch_size: Operations per atomic commit, 1 to 500. Default 500.
        batch_bytes: Encoded bytes per commit. Default 4,000,000.
        concurrency: Batches committed at once. Default 1.
        max_rate: A hard cap, operations per second for all commits together.
        ramp: Ramp the traffic up. Default: on against a real project, off on the
            emulator.
        ramp_start: Where the ramp starts, in operations per second. Default 500.
        max_skip_ratio: Stop the run when more than this share of its last 1,000
            operations were skipped, 0 to 1.
        runner: `local` or `beam`. Default `local`.
        workers: DirectRunner worker processes, with `runner="beam"`. Default 2.
        beam_options: Beam pipeline options, e.g. `{"runner": "DataflowRunner"}`.
        as_of: When the plans read the database: an RFC 3339 time, an age like "30m",
            or a datetime. Default: when the plan starts.
    """

    batch_size: Optional[int] = None
    batch_bytes: Optional[int] = None
    concurrency: Optional[int] = None
    max_rate: Optional[float] = None
    ramp: Optional[bool] = None
    ramp_start: Optional[float] = None
    max_skip_ratio: Optional[float] = None
    runner: Optional[str] = None
    workers: Optional[int] = None
    beam_options: Mapping[str, str] = field(default_factory=dict, hash=False)
    as_of: AsOf = None

    def __post_init__(self) -> None:
        for name in CONFIG_FIELDS:
            value = getattr(self, name)
            if value is not None:
                key = config_file.KEYS[name.replace("_", "-")]
                object.__setattr__(self, name, config_file.coerce(key, value, "RunOptions"))
        options = self.beam_options if self.beam_options is not None else {}
        if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()
        ):
            raise UsageError(
                f"RunOptions: beam_options must map option names to text, got {options!r}"
            )
        object.__setattr__(self, "beam_options", dict(options))
        if self.as_of is not None and not isinstance(self.as_of, (str, dt.datetime)):
            raise UsageError(
                f"RunOptions: as_of must be a time, an age like 30m or a datetime, "
                f"got {self.as_of!r}"
            )
        if isinstance(self.as_of, str):
            _instant(self.as_of, dt.datetime.now(dt.timezone.utc))  # its form, now

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunOptions:
        """`RunOptions(**values)`, with an unknown name refused in one line."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(
                f"unknown run option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def given(self) -> dict[str, Any]:
        """The options this object says (not None, beam_options when not empty)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["beam_options"] = dict(self.beam_options) or None
        return {k: v for k, v in out.items() if v is not None}

    def over(self, base: RunOptions) -> RunOptions:
        """These options where they say something, else `base`'s. A `ramp=False` here
        (or `base`'s) also drops `base`'s ramp start: a configured start does not turn
        the ramp on again; only a start given here with it is refused (traffic.resolve)."""
        merged = replace(base, **self.given())
        if merged.ramp is False and self.ramp_start is None:
            merged = replace(merged, ramp_start=None)
        return merged

    def resolved(self, now: Optional[dt.datetime] = None) -> ResolvedOptions:
        """Every option with fsmigrate's default where none is said; `as_of` as the
        instant (at `now`, default the current time). UsageError for a combination
        that cannot run (Beam options without the Beam runner, an instant in the future
        or older than Firestore keeps versions)."""

        def default(name: str) -> Any:
            value = getattr(self, name)
            return config_file.KEYS[name.replace("_", "-")].default if value is None else value

        runner = default("runner")
        if runner == "local" and self.beam_options:
            raise UsageError("--beam-option needs --runner beam")
        return ResolvedOptions(
            batch_size=default("batch_size"),
            batch_bytes=default("batch_bytes"),
            concurrency=default("concurrency"),
            max_rate=self.max_rate,
            ramp=self.ramp,
            ramp_start=self.ramp_start,
            max_skip_ratio=self.max_skip_ratio,
            runner=runner,
            workers=default("workers"),
            beam_options=self.beam_options,
            as_of=snapshot(self.as_of, now),
        )

    def refuse(self, command: str, names: tuple[str, ...]) -> None:
        """UsageError when this object gives one of `names`, which `command` does not
        take (restore has no runner, apply no snapshot of its own...)."""
        said = [n for n in names if n in self.given()]
        if said:
            raise UsageError(f"{command} does not take {', '.join(said)}")


# the RunOptions fields that are also config-file keys (checked as the file's keys are)
CONFIG_FIELDS = tuple(k.attr for k in config_file.RUN_KEYS)


@dataclass(frozen=True)
class ResolvedOptions:
    """A command's options after resolution: every default filled in.

    Attributes:
        batch_size: Operations per atomic commit.
        batch_bytes: Encoded bytes per commit.
        concurrency: Batches committed at once.
        max_rate: The hard cap, operations per second, or None.
        ramp: Whether the traffic ramps up; None: as the target decides.
        ramp_start: Where the ramp starts, or None for the default.
        max_skip_ratio: The skip budget, or None.
        runner: `local` or `beam`.
        workers: DirectRunner worker processes.
        beam_options: Beam pipeline options.
        as_of: When the plans read the database; None: when each plan starts.
    """

    batch_size: int
    batch_bytes: int
    concurrency: int
    max_rate: Optional[float]
    ramp: Optional[bool]
    ramp_start: Optional[float]
    max_skip_ratio: Optional[float]
    runner: str
    workers: int
    beam_options: Mapping[str, str] = field(default_factory=dict, hash=False)
    as_of: Optional[dt.datetime] = None

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["beam_options"] = dict(self.beam_options)
        out["as_of"] = rfc3339(self.as_of) if self.as_of is not None else None
        return out


def _instant(text: str, now: dt.datetime) -> dt.datetime:
    try:
        return parse_instant(text, now)
    except ValueError as exc:
        raise UsageError(f"--as-of: {exc}") from None


def snapshot(as_of: AsOf, now: Optional[dt.datetime] = None) -> Optional[dt.datetime]:
    """`as_of` as the instant plans read at: not in the future, and not older than the
    longest Firestore keeps versions (7 days, with point-in-time recovery; without it a
    read older than 1 hour is refused by Firestore, in one line too)."""
    if as_of is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    if isinstance(as_of, dt.datetime):
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.timezone.utc)
    else:
        when = _instant(as_of, now)
    when = when.astimezone(dt.timezone.utc)
    if when > now:
        raise UsageError(f"--as-of {rfc3339(when)} is in the future; Firestore reads the past")
    if now - when > VERSIONS_KEPT_PITR:
        raise UsageError(
            f"--as-of {rfc3339(when)} is older than Firestore keeps versions "
            f"({VERSIONS_KEPT_PITR.days} days with point-in-time recovery, "
            f"{int(VERSIONS_KEPT.total_seconds() // 3600)} hour without); pick a later time"
        )
    return when
