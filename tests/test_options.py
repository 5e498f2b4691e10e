"""Run options as one object (fsmigrate.options, api.RunOptions): checked when made,
resolved once (given, then the config's, then the default), refused before anything is
written."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.errors import UsageError
from fsmigrate.options import RunOptions


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"batch_size": 0}, "batch-size must be from 1 to 500, got 0"),
        ({"batch_size": 501}, "batch-size must be from 1 to 500"),
        ({"batch_size": "10"}, "batch-size must be an integer"),
        ({"batch_bytes": 10}, "batch-bytes must be from"),
        ({"concurrency": 0}, "concurrency must be from 1"),
        ({"max_rate": 0}, "max-rate must be above 0"),
        ({"max_rate": float("inf")}, "max-rate must be above 0"),
        ({"ramp": "yes"}, "ramp must be true or false"),
        ({"ramp_start": -1}, "ramp-start must be above 0"),
        ({"max_skip_ratio": 1.5}, "max-skip-ratio must be from 0 to 1"),
        ({"runner": "spark"}, "runner must be one of local, beam, got 'spark'"),
        ({"workers": 65}, "workers must be from 1 to 64"),
        ({"workers": True}, "workers must be an integer"),
        ({"beam_options": {"runner": 3}}, "beam_options must map option names to text"),
        ({"as_of": "yesterday"}, "--as-of: 'yesterday' is neither an age"),
        ({"as_of": 12}, "as_of must be a time"),
    ],
)
def test_a_bad_option_is_refused_when_the_object_is_made(given: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RunOptions(**given)


def test_an_int_is_a_float_and_the_object_is_frozen() -> None:
    options = RunOptions(max_rate=200, ramp_start=50)
    assert isinstance(options.max_rate, float) and options.max_rate == 200.0
    with pytest.raises(AttributeError):
        options.batch_size = 3  # type: ignore[misc]
    assert RunOptions(batch_size=3) == RunOptions(batch_size=3)
    assert hash(RunOptions(batch_size=3)) == hash(RunOptions(batch_size=3))


def test_given_then_config_then_default() -> None:
    config = RunOptions(batch_size=200, max_rate=300, runner="local")
    resolved = RunOptions(batch_size=10).over(config).resolved()
    assert (resolved.batch_size, resolved.max_rate, resolved.runner) == (10, 300.0, "local")
    # what nobody says is fsmigrate's default
    assert (resolved.batch_bytes, resolved.concurrency, resolved.workers) == (
        api.DEFAULT_BATCH_BYTES,
        1,
        2,
    )
    assert resolved.ramp is None and resolved.max_skip_ratio is None
    assert RunOptions().over(config) == config


def test_no_ramp_drops_a_configured_ramp_start_but_not_a_given_one() -> None:
    config = RunOptions(ramp_start=100)
    assert RunOptions(ramp=False).over(config).resolved().ramp_start is None
    assert RunOptions(ramp=False, ramp_start=50).over(config).ramp_start == 50.0
    # the file's own ramp = false with a ramp-start: the start is dropped too
    assert RunOptions().over(RunOptions(ramp=False, ramp_start=100)).ramp_start is None


def test_beam_options_need_the_beam_runner_from_wherever_it_comes() -> None:
    with pytest.raises(UsageError, match="--beam-option needs --runner beam"):
        RunOptions(beam_options={"runner": "DataflowRunner"}).resolved()
    configured = RunOptions(runner="beam")
    resolved = RunOptions(beam_options={"journal": "/tmp/j"}).over(configured).resolved()
    assert resolved.runner == "beam" and dict(resolved.beam_options) == {"journal": "/tmp/j"}


def test_as_of_becomes_one_instant_in_range() -> None:
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert RunOptions(as_of="30m").resolved(now).as_of == now - dt.timedelta(minutes=30)
    naive = dt.datetime(2026, 5, 1, 11, 0)
    assert RunOptions(as_of=naive).resolved(now).as_of == naive.replace(tzinfo=dt.timezone.utc)
    with pytest.raises(UsageError, match="is in the future"):
        RunOptions(as_of="2026-05-02T00:00:00Z").resolved(now)
    with pytest.raises(UsageError, match="older than Firestore keeps versions"):
        RunOptions(as_of="8d").resolved(now)


def test_unknown_names_and_wrong_types_in_the_config() -> None:
    with pytest.raises(UsageError, match="unknown run option.s. batchsize"):
        api.Config(run={"batchsize": 3})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="batch-size must be from 1 to 500"):
        api.Config(run={"batch_size": 0})  # type: ignore[arg-type]
    assert api.Config(run={"batch_size": 3}).run == RunOptions(batch_size=3)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Config.run must be an api.RunOptions"):
        api.Config(run=3)  # type: ignore[arg-type]
    cfg = api.Config(project="p")
    with pytest.raises(UsageError, match="run options must be an api.RunOptions"):
        cfg.run_options({"batch_size": 3})  # type: ignore[arg-type]


def test_restore_and_apply_refuse_what_they_do_not_take(tmp_path: Path) -> None:
    cfg = api.Config(project="p", state=tmp_path / "state.db", migrations=tmp_path)
    with pytest.raises(UsageError, match="restore does not take batch_size, runner"):
        api.restore(cfg, "run", RunOptions(batch_size=10, runner="local"))
    with pytest.raises(UsageError, match="apply does not take as_of"):
        api.apply_plan(cfg, tmp_path / "plan.jsonl", RunOptions(as_of="1m"))
    assert not (tmp_path / "state.db").exists()  # refused before the state file


def test_a_config_files_run_keys_become_its_run_options(tmp_path: Path) -> None:
    (tmp_path / "fsmigrate.toml").write_text(
        textwrap.dedent(
            """
            project = "acme"
            batch-size = 50
            runner = "beam"
            workers = 3

            [env.prod]
            max-rate = 100.0
            ramp = false
            """
        )
    )
    cfg = api.Config.from_file(tmp_path / "fsmigrate.toml", env="prod", environ={})
    assert cfg.run == RunOptions(
        batch_size=50,
        batch_bytes=api.DEFAULT_BATCH_BYTES,
        concurrency=1,
        max_rate=100.0,
        ramp=False,
        runner="beam",
        workers=3,
    )
    resolved = cfg.run_options(RunOptions(workers=4, ramp=True))
    assert (resolved.batch_size, resolved.workers, resolved.ramp) == (50, 4, True)
    assert api.config(api.Config(project="p", run=RunOptions(batch_size=7)))["batch-size"] == 7
