"""Traces (the `otel` extra): spans for the command, each migration's run, the scan and each
batch commit, with their attributes, in the SDK's in-memory exporter; and nothing of
OpenTelemetry imported when it is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fsmigrate import api
from helpers import seed_items, write_script

BUMP = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The process's tracer provider (set once) exporting to memory, emptied per test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture
def cfg(tmp_path: Path, project_id: str, emulator) -> api.Config:
    write_script(tmp_path / "migrations", "0001", None, BUMP)
    return api.Config(
        project=project_id, state=tmp_path / "state.db", migrations=tmp_path / "migrations"
    )


def test_spans_with_their_attributes(
    cfg: api.Config, fs_client, spans: InMemorySpanExporter
) -> None:
    seed_items(fs_client, 25)

    result = api.upgrade(cfg, api.RunOptions(batch_size=10, max_rate=1000))

    run = result.runs[0]
    found = spans.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in found:
        by_name.setdefault(span.name, []).append(span)
    [command] = by_name["fsmigrate upgrade"]
    [migration] = by_name["fsmigrate.migration"]
    [scan] = by_name["fsmigrate.scan"]
    commits = by_name["fsmigrate.commit"]
    assert command.attributes["fsmigrate.project"] == cfg.project
    assert command.attributes["fsmigrate.migrations"] == 1
    assert command.attributes["fsmigrate.dry_run"] is False
    assert migration.parent.span_id == command.context.span_id
    attrs = migration.attributes
    assert attrs["fsmigrate.revision"] == "0001" and attrs["fsmigrate.run_id"] == run.run_id
    assert attrs["fsmigrate.mode"] == "apply" and attrs["fsmigrate.status"] == "succeeded"
    assert attrs["fsmigrate.committed"] == 25 and attrs["fsmigrate.skipped"] == 0
    assert attrs["fsmigrate.batches"] == 3 and attrs["fsmigrate.retries"] == 0
    assert attrs["fsmigrate.reads"] == 25
    assert attrs["fsmigrate.throttle_events"] == 0
    assert scan.parent.span_id == migration.context.span_id
    assert scan.attributes["fsmigrate.collection"] == "items"
    assert scan.attributes["fsmigrate.documents"] == 25
    assert sorted(c.attributes["fsmigrate.operations"] for c in commits) == [5, 10, 10]
    for commit in commits:
        assert commit.parent.span_id == migration.context.span_id  # from the commit thread
        assert commit.attributes["fsmigrate.bytes"] > 0
        assert commit.attributes["fsmigrate.committed"] == commit.attributes["fsmigrate.operations"]
        assert commit.attributes["fsmigrate.retries"] == 0
        assert commit.attributes["fsmigrate.limit_ops_per_s"] == 1000
    assert {s.context.trace_id for s in found} == {command.context.trace_id}


def test_a_failed_migration_span_is_marked_failed(
    cfg: api.Config, fs_client, spans: InMemorySpanExporter
) -> None:
    seed_items(fs_client, 3)
    write_script(
        cfg.migrations_path,
        "0001",
        None,
        """
def plan(ctx):
    yield from ()
    raise RuntimeError("boom")
""",
    )

    with pytest.raises(Exception, match="boom"):
        api.upgrade(cfg)

    [migration] = [s for s in spans.get_finished_spans() if s.name == "fsmigrate.migration"]
    assert migration.status.status_code.name == "ERROR"
    assert migration.attributes["fsmigrate.status"] == "failed"


def test_nothing_of_opentelemetry_is_imported_when_it_is_absent(cfg: api.Config, fs_client) -> None:
    seed_items(fs_client, 5)
    program = textwrap.dedent(
        f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from fsmigrate import api
        from fsmigrate.engine import tracing
        cfg = api.Config(project={cfg.project!r}, state={str(cfg.state_path)!r},
                         migrations={str(cfg.migrations_path)!r})
        result = api.upgrade(cfg, api.RunOptions(batch_size=2))
        assert result.runs[0].committed == 5, result.runs[0]
        assert not tracing.enabled()
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['opentelemetry']"  # only the blocker itself
