"""Checks as plugins: `fsmigrate check NAME` finds them through the entry-point group
`fsmigrate.checks`, offers their declared options, and renders text, JSON or OpenMetrics
(parsed here with prometheus_client's parsers, never a regex). Against the real emulator
where Firestore is involved."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

from fsmigrate.cli import cli
from fsmigrate.heartbeats import incident
from helpers import Fsm

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
SUMMARY = "Count heartbeat documents by ID kind and flag growth and legacy writers."
HB = "fsmigrate_check_heartbeats_"


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    """The project's own migrations (0001: the heartbeat cleanup)."""
    return dataclasses.replace(fsm, migrations=MIGRATIONS)


def gauges(text: str, parser=parse_om) -> dict[str, list]:
    """Family name -> samples, from OpenMetrics text; every family must be a gauge."""
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parser(text)}
    assert all(f.type == "gauge" for f in families.values()), families
    return {name: f.samples for name, f in families.items()}


def value(families: dict[str, list], name: str, **labels: str) -> float:
    found = [
        s.value for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, families[name])
    return found[0]


def heartbeat_values(families: dict[str, list]) -> dict[str, float]:
    out = {
        name[len(HB) :]: value(families, name)
        for name in families
        if name != HB + "documents_by_kind"
    }
    out.update({f"kind:{s.labels['kind']}": s.value for s in families[HB + "documents_by_kind"]})
    return out


def test_openmetrics_of_the_incident_then_after_the_cleanup(
    fsm: Fsm, fs_client, tmp_path: Path
) -> None:
    # the incident as of now (not as of collection: a slow session would age its last
    # hour out of the check's window)
    incident.seed(fs_client, dt.datetime.now(dt.timezone.utc))

    before = fsm("check", "heartbeats", "--format", "openmetrics")

    assert before.exit_code == 1, before.output
    assert before.stderr.startswith("UNHEALTHY: 1053 documents")
    families = gauges(before.stdout)
    for samples in families.values():  # the collection is a label of every sample
        assert all(s.labels["collection"] == "processor_heartbeats" for s in samples)
    got = heartbeat_values(families)
    checked = got.pop("checked_timestamp_seconds")
    assert abs(checked - dt.datetime.now(dt.timezone.utc).timestamp()) < 120
    assert got == {
        "healthy": 0,
        "documents": 1053,
        "legacy_documents": 1035,
        "unknown_documents": 0,
        "documents_updated_in_window": 18 - 3 + 37,
        "growth_per_day": 37 * 24,
        "legacy_documents_in_window": 37,
        "max_docs": 50,
        "window_seconds": 3600,
        "kind:canonical_processor": 13,
        "kind:canonical_phase2": 5,
        "kind:legacy_run": 777,
        "kind:legacy_date": 258,
        "kind:unknown": 0,
    }

    assert fsm("upgrade").exit_code == 0
    prom = tmp_path / "textfile" / "heartbeats.prom"
    after = fsm("check", "heartbeats", "--format", "openmetrics", "-o", str(prom))

    assert after.exit_code == 0, after.output
    assert after.stdout == "" and f"written to {prom}" in after.stderr
    text = prom.read_text(encoding="utf-8")
    got = heartbeat_values(gauges(text))
    assert (got["healthy"], got["documents"], got["legacy_documents"]) == (1, 20, 0)
    assert (
        got["kind:canonical_processor"],
        got["kind:canonical_phase2"],
        got["kind:legacy_run"],
        got["kind:legacy_date"],
    ) == (15, 5, 0, 0)
    assert got["growth_per_day"] == 0 and got["legacy_documents_in_window"] == 0
    # what a node-exporter textfile collector reads: the Prometheus text format
    assert heartbeat_values(gauges(text, parse_prom)) == got


def test_options_reach_the_check_and_its_output(fsm: Fsm, fs_client) -> None:
    incident.seed(fs_client, dt.datetime.now(dt.timezone.utc), collection="hb_copy", legacy=12)

    out = fsm(
        "check",
        "heartbeats",
        "--collection",
        "hb_copy",
        "--max-docs",
        "100",
        "--window",
        "2h",
        "--format",
        "openmetrics",
    )
    text = fsm("check", "heartbeats", "--collection", "hb_copy", "--window", "2h")
    empty = fsm("check", "heartbeats", "--format", "json")  # the default collection

    assert out.exit_code == 1  # 12 legacy documents; not over --max-docs
    families = gauges(out.stdout)
    assert {s.labels["collection"] for v in families.values() for s in v} == {"hb_copy"}
    got = heartbeat_values(families)
    assert (got["documents"], got["max_docs"], got["window_seconds"]) == (30, 100, 7200)
    assert (
        out.stderr.strip() == "UNHEALTHY: 12 legacy-format documents (expected 0); 12 "
        "legacy documents written in the last 2h: an old image is still running"
    )
    assert text.exit_code == 1
    lines = text.stdout.splitlines()
    assert lines[0].startswith("hb_copy: UNHEALTHY (checked ")
    assert lines[1] == "  total                        30  (alarm above 50)"
    assert "  legacy run-suffixed           9" in lines
    assert "  legacy date-suffixed          3" in lines
    assert "  updated in last 2h           27  (growth 144 documents/day)" in lines
    assert "  legacy written in 2h         12" in lines
    assert empty.exit_code == 0 and json.loads(empty.stdout)["total"] == 0


def test_check_list_and_help_come_from_the_plugin() -> None:
    listed = CliRunner().invoke(cli, ["check", "--list"])
    helped = CliRunner().invoke(cli, ["check", "heartbeats", "--help"])
    group_help = CliRunner().invoke(cli, ["check", "--help"])

    assert listed.exit_code == 0, listed.output
    assert f"heartbeats           {SUMMARY}" in listed.stdout.splitlines()
    assert helped.exit_code == 0, helped.output
    words = " ".join(helped.stdout.split())  # as wrapped to the terminal's width
    for text in (
        "--max-docs",
        "--window",
        "--collection",
        "--format",
        "openmetrics",
        "--output",
        "default: 50",
        "default: 1h",
        "default: processor_heartbeats",
        "Example",
        SUMMARY,
    ):
        assert text in words, text
    assert group_help.exit_code == 0 and "heartbeats" in group_help.stdout


def test_bad_options_and_unknown_checks_are_usage_errors(fsm: Fsm) -> None:
    for args in (["--window", "1y"], ["--window", "0h"], ["--window", "3651d"]):
        result = fsm("check", "heartbeats", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "--window" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fsm("check", "heartbeats", "--max-docs", "-1").exit_code == 2
    assert fsm("check", "heartbeats", "--format", "yaml").exit_code == 2
    assert fsm("check", "heartbeats", "--nope").exit_code == 2

    unknown = fsm("check", "heartbeat")

    assert unknown.exit_code == 2
    assert "heartbeat" in unknown.stderr and "Traceback" not in unknown.output


# ---- a check from another distribution -----------------------------------------------------

PLUGIN = '''
    """A team's own check, installed as a separate distribution."""
    from fsmigrate.checks import CheckResult, Metric, Option, options


    @options(Option("collection", str, "sessions", "Collection to read."),
             Option("max_open", int, 10, "Alarm above this many matching documents.",
                    minimum=0),
             Option("status", str, "open", "The status that counts."),
             Option("strict", bool, False, "Also fail on documents without a status."))
    def mycheck(store, *, collection, max_open, status, strict):
        """Count documents of one status in a collection (a throwaway plugin).

        Reads COLLECTION through the store; unhealthy above --max-open.

        Example:

            fsmigrate check mycheck --status active
        """
        matching, missing = [], []
        for doc in store.scan(collection):
            if doc.get("status") == status:
                matching.append(doc.id)
            elif doc.get("status") is None:
                missing.append(doc.id)
        reasons = []
        if len(matching) > max_open:
            reasons.append(f"{len(matching)} {status} documents, more than {max_open}")
        if strict and missing:
            reasons.append(f"{len(missing)} documents without a status")
        return CheckResult(
            check="mycheck", healthy=not reasons, reasons=reasons,
            labels={"collection": collection},
            details={"matching": sorted(matching), "missing": sorted(missing),
                     "options": {"collection": collection, "max_open": max_open,
                                 "status": status, "strict": strict}},
            metrics=[Metric("matching_documents", len(matching), {"status": status},
                            help="documents of the status")],
            lines=[f"matching {len(matching)}"])
'''


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Path:
    """A distribution `mycheck` on a path entry of its own, declaring the entry point
    `[fsmigrate.checks] mycheck = mymod:mycheck` the way an installed wheel does."""
    site = tmp_path / "site"
    (site / "mycheck-0.1.dist-info").mkdir(parents=True)
    (site / "mymod.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (site / "mycheck-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mycheck\nVersion: 0.1\n", encoding="utf-8"
    )
    (site / "mycheck-0.1.dist-info" / "entry_points.txt").write_text(
        "[fsmigrate.checks]\nmycheck = mymod:mycheck\n", encoding="utf-8"
    )
    return site


def run_fsmigrate(site: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "fsmigrate", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_check_from_another_distribution_is_found_listed_and_run(
    plugin_dist: Path, tmp_path: Path, fs_client, project_id: str
) -> None:
    col = fs_client.collection("logins")
    for doc_id, status in [
        ("a", "active"),
        ("b", "active"),
        ("c", "active"),
        ("d", "idle"),
        ("e", None),
    ]:
        col.document(doc_id).set({"status": status} if status else {"user": doc_id})
    fs_client.collection("sessions").document("s1").set({"status": "open"})
    base = ["--project", project_id, "--state", str(tmp_path / "state.db")]

    listed = run_fsmigrate(plugin_dist, "check", "--list")
    helped = run_fsmigrate(plugin_dist, "check", "mycheck", "--help")
    strict = run_fsmigrate(
        plugin_dist,
        *base,
        "check",
        "mycheck",
        "--format",
        "json",
        "--collection",
        "logins",
        "--max-open",
        "2",
        "--status",
        "active",
        "--strict",
    )
    lenient = run_fsmigrate(
        plugin_dist,
        *base,
        "check",
        "mycheck",
        "--format",
        "json",
        "--collection",
        "logins",
        "--max-open",
        "3",
        "--status",
        "active",
    )
    defaults = run_fsmigrate(plugin_dist, *base, "check", "mycheck", "--format", "json")
    metrics = run_fsmigrate(
        plugin_dist,
        *base,
        "check",
        "mycheck",
        "--format",
        "openmetrics",
        "--collection",
        "logins",
        "--status",
        "active",
    )

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(
        line.split(None, 1)
        == ["mycheck", "Count documents of one status in a collection (a throwaway plugin)."]
        for line in lines
    )
    assert any(line.split(None, 1) == ["heartbeats", SUMMARY] for line in lines)
    assert helped.returncode == 0, helped.stderr
    for text in ("--collection", "--max-open", "--status", "--strict", "default: 10"):
        assert text in helped.stdout, text

    assert strict.returncode == 1, strict.stderr
    out = json.loads(strict.stdout)
    assert out["options"] == {
        "collection": "logins",
        "max_open": 2,
        "status": "active",
        "strict": True,
    }
    assert (out["check"], out["matching"], out["missing"]) == ("mycheck", ["a", "b", "c"], ["e"])
    assert out["reasons"] == ["3 active documents, more than 2", "1 documents without a status"]
    assert strict.stderr.strip() == "UNHEALTHY: " + "; ".join(out["reasons"])

    assert lenient.returncode == 0, lenient.stderr
    out = json.loads(lenient.stdout)
    assert out["healthy"] is True and out["options"]["strict"] is False
    assert out["options"]["max_open"] == 3

    assert defaults.returncode == 0, defaults.stderr
    out = json.loads(defaults.stdout)
    assert out["options"] == {
        "collection": "sessions",
        "max_open": 10,
        "status": "open",
        "strict": False,
    }
    assert out["matching"] == ["s1"]

    assert metrics.returncode == 0, metrics.stderr
    families = gauges(metrics.stdout)
    assert (
        value(
            families,
            "fsmigrate_check_mycheck_matching_documents",
            collection="logins",
            status="active",
        )
        == 3
    )
    assert value(families, "fsmigrate_check_mycheck_healthy", collection="logins") == 1


def test_without_the_distribution_the_check_does_not_exist(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    result = run_fsmigrate(empty, "--project", "p", "check", "mycheck")
    listed = run_fsmigrate(empty, "check", "--list")

    assert result.returncode == 2 and "mycheck" in result.stderr
    assert listed.returncode == 0 and "mycheck" not in listed.stdout
