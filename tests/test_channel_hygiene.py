"""Channel hygiene: the commands of one process share one set of channels per target (the
Firestore client's and the fast one), and every channel opened is closed: by
`api.close()`, by the command line at exit, by a Store that opened its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from fsmigrate import api
from fsmigrate.firestore.connection import USER_AGENT, Connection
from fsmigrate.firestore.store import Store, Target
from helpers import Fsm, seed_items, write_script

DELETE_ODD = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") % 2:
            yield ctx.delete(doc)
"""


@dataclass
class Counted:
    """fsmigrate's gRPC channels made and closed (told apart from the test's own client's
    by their user agent option)."""

    made: list[Any] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)

    @property
    def open(self) -> int:
        return len(self.made) - len(self.closed)


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    api.close()  # nothing left open by an earlier test of this process
    counted = Counted()
    real = grpc.insecure_channel

    def counting(target: str, options: Any = None, **kwargs: Any) -> Any:
        channel = real(target, options=options, **kwargs)
        if ("grpc.primary_user_agent", USER_AGENT) in (options or ()):
            counted.made.append(channel)
            close = channel.close

            def closing() -> None:
                counted.closed.append(channel)
                close()

            channel.close = closing  # type: ignore[method-assign]
        return channel

    monkeypatch.setattr(grpc, "insecure_channel", counting)
    yield counted
    api.close()


def test_the_api_commands_of_a_process_share_two_channels_and_close_them(
    tmp_path, project_id: str, emulator, fs_client, channels: Counted
) -> None:
    seed_items(fs_client, 30)
    write_script(tmp_path / "migrations", "0001", None, DELETE_ODD)
    cfg = api.Config(
        project=project_id, state=tmp_path / "s.db", migrations=tmp_path / "migrations"
    )

    api.upgrade(cfg, dry_run=True).state.close()
    api.upgrade(cfg).state.close()
    api.status(cfg)
    api.verify(cfg)
    api.check_names()

    assert len(channels.made) == 2 and channels.open == 2  # the client's and the fast one
    assert api.close() == 1  # one target
    assert channels.open == 0 and channels.closed == channels.made
    # the next command opens new ones
    api.status(cfg)
    assert (len(channels.made), channels.open) == (4, 2)


def test_every_command_line_run_closes_what_it_opened(
    fsm: Fsm, fs_client, channels: Counted
) -> None:
    seed_items(fs_client, 30)
    write_script(fsm.migrations, "0001", None, DELETE_ODD)

    for args in (
        ["upgrade", "--dry-run"],
        ["status", "--check", "--plan"],  # status, verify and a dry-run: one pair
        ["upgrade"],
        ["history"],
    ):
        before = len(channels.made)
        result = fsm(*args)
        assert result.exit_code in (0, 1), result.output
        assert len(channels.made) - before <= 2, args
        assert channels.open == 0, f"{args}: {channels.open} channel(s) left open"
    assert len(channels.made) >= 6 and channels.closed == channels.made


def test_a_store_closes_the_channels_it_opened_not_the_ones_it_was_given(
    project_id: str, emulator, channels: Counted
) -> None:
    store = Store(Target(project_id, emulator_host=emulator.host_port))
    assert store.get("a/b") is None
    assert channels.open == 2
    store.close()
    assert channels.open == 0

    own = Store(Target(project_id), connection=Connection(emulator_host=emulator.host_port))
    lent = Store(Target(project_id), channels=own.channels)
    assert (
        lent.get("a/b") is None and lent.client.collection("a").document("b").get().exists is False
    )
    lent.close()
    assert channels.open == 2  # the lender's, still in use
    own.close()
    assert channels.open == 0
    with pytest.raises(RuntimeError, match="closed"):
        Store(Target(project_id), channels=own.channels).get("a/b")
