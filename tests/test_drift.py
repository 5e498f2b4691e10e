"""The pure decisions behind status and verify, with scripts and records built inline."""

from __future__ import annotations

from pathlib import Path

from fsmigrate.scripts.drift import findings, status_rows
from fsmigrate.scripts.loader import Script, build_chain


def chain(*specs: tuple[str, str]):
    scripts, down = [], None
    for rev, checksum in specs:
        scripts.append(
            Script(
                revision=rev,
                down_revision=down,
                path=Path(f"{rev}_x.py"),
                doc=f"script {rev}",
                checksum=checksum,
                plan=lambda ctx: [],
            )
        )
        down = rev
    return build_chain(scripts)


def local(**revs: str) -> dict:
    return {
        rev: {"checksum": c, "applied_at": "t", "run_id": f"run-{rev}"} for rev, c in revs.items()
    }


def marker(checksum: str, run: str = "m-run") -> dict:
    return {"checksum": checksum, "run_id": run, "operator": "bob", "host": "ci", "applied_at": "t"}


def test_status_rows_cover_every_state() -> None:
    c = chain(("0001", "a"), ("0002", "b"), ("0003", "c"), ("0004", "d"), ("0005", "e"))
    rows = status_rows(
        c,
        local(**{"0001": "a", "0003": "OLD", "0004": "d", "0009": "z"}),
        {"0001": marker("a"), "0002": marker("b"), "0003": marker("OLD")},
    )
    states = {r["revision"]: r["state"] for r in rows}
    assert states == {
        "0001": "applied",
        "0002": "applied elsewhere",
        "0003": "applied (script changed)",
        "0004": "applied (no marker)",
        "0005": "pending",
        "0009": "applied (missing)",
    }
    local_only = {r["revision"]: r["state"] for r in status_rows(c, local(**{"0004": "d"}), None)}
    assert local_only["0004"] == "applied"  # markers not read: nothing to miss


def test_findings_from_markers_and_from_the_state_file() -> None:
    c = chain(("0001", "a"), ("0002", "b"))
    problems = findings(
        c,
        local(**{"0001": "a", "0002": "B-OLD", "0007": "x"}),
        {"0001": marker("A-OTHER"), "0008": marker("y")},
        migrations=Path("migrations"),
        state_path=Path("state.db"),
    )
    got = sorted((f["revision"], f["problem"]) for f in problems)
    assert got == [
        ("0001", "changed"),
        ("0002", "changed"),
        ("0002", "no marker"),
        ("0007", "missing"),
        ("0007", "no marker"),
        ("0008", "missing"),
    ]
    assert (
        findings(
            c,
            local(**{"0001": "a"}),
            {"0001": marker("a")},
            migrations=Path("m"),
            state_path=Path("s"),
        )
        == []
    )
