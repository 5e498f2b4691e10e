"""Memory stays flat with the number of documents: migration 0001 (the heartbeat cleanup)
run at two sizes keeps no structure per document, nor per processor, beyond what the
processors the scan is in need (issue 24: 88 MB at 50,000 documents, 220 MB at 1,000,000).

Two measures, each at two sizes with the same shape of data (~3% processors, ~97% legacy
documents, like bench/cleanup.py), and the growth between them divided by the extra
documents:
  - the peak of Python allocations (tracemalloc), per extra document;
  - how many read documents (`Doc`, whose protobuf tracemalloc does not see) are alive at
    once, at most: bounded by the batches in flight, not by the collection.
No time is measured."""

from __future__ import annotations

import datetime as dt
import gc
import json
import random
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from fsmigrate import api
from fsmigrate.beam import workfiles
from fsmigrate.firestore import store as store_mod
from fsmigrate.firestore.store import Target
from fsmigrate.report.runs import Outcome, upgrade_chunks
from fsmigrate.state.database import PENDING_NOTES, State, is_problem
from fsmigrate.state.runs import RunResult

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 1_500, 4_500
# Measured after the fix: -12 to +5 bytes per document (noise), and the same number of
# documents alive at both sizes (1,002: two batches of 500). A set or list of every path
# read would add ~100 bytes per document; the old per-processor survivors ~0.06 documents
# alive per document (90 more at the larger size).
MAX_BYTES_PER_DOC = 25.0
MAX_EXTRA_DOCS_ALIVE = 10


def heartbeats(total: int, seed: int = 7):
    """(id, data) in bench/cleanup.py's shape: ~3% processors, the rest legacy."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    processors = [f"Synthetic{i:04d}Processor" for i in range(max(30, total * 3 // 100))]
    for name in processors:
        yield name, {"processor_name": name, "last_heartbeat": now, "status": "running"}
    for n in range(total - len(processors)):
        name = processors[n % len(processors)]
        beat = now - dt.timedelta(seconds=rng.uniform(700, 4 * 86400))
        doc_id = (
            f"{name}_{beat.date().isoformat()}_{n:08x}" if n % 4 == 3 else f"{name}_None_{n:08x}"
        )
        yield (
            doc_id,
            {
                "processor_name": name,
                "last_heartbeat": beat,
                "run_id": f"{n:08x}",
                "progress": {"rows": rng.randrange(50_000), "pct": rng.random() * 100},
            },
        )


def seed(client: Any, total: int) -> None:
    batch, count = client.batch(), 0
    for doc_id, data in heartbeats(total):
        batch.set(client.collection("processor_heartbeats").document(doc_id), data)
        count += 1
        if count == 500:
            batch.commit()
            batch, count = client.batch(), 0
    if count:
        batch.commit()


class _CountedDoc(store_mod.Doc):
    """A read document that counts how many of its kind are alive."""

    alive = 0
    most = 0

    def __init__(self, pb: Any, client: Any) -> None:
        super().__init__(pb, client)
        cls = _CountedDoc
        cls.alive += 1
        cls.most = max(cls.most, cls.alive)

    def __del__(self) -> None:
        _CountedDoc.alive -= 1


def measured(tmp_path: Path, project: str, total: int, dry_run: bool) -> tuple[int, int]:
    """(peak bytes of Python allocations, most documents alive at once) of one run of
    0001 over `total` freshly seeded documents."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    seed(client, total)
    client.close()
    cfg = api.Config(
        project=project, state=tmp_path / f"{total}-{dry_run}.db", migrations=ROOT / "migrations"
    )
    gc.collect()
    _CountedDoc.alive = _CountedDoc.most = 0
    tracemalloc.start()
    try:
        result = api.upgrade(cfg, dry_run=dry_run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.runs[0].status == "succeeded"
    assert result.runs[0].counts["delete"] > total // 2  # it did the work
    return peak, _CountedDoc.most


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_memory_does_not_grow_with_the_documents(
    tmp_path: Path, emulator, project_id: str, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    monkeypatch.setattr(store_mod, "Doc", _CountedDoc)
    small = measured(tmp_path, f"{project_id}-s", SMALL, dry_run)
    large = measured(tmp_path, f"{project_id}-l", LARGE, dry_run)

    per_doc = (large[0] - small[0]) / (LARGE - SMALL)
    assert per_doc < MAX_BYTES_PER_DOC, (
        f"peak Python memory grows by {per_doc:.1f} bytes per document "
        f"({small[0]:,} -> {large[0]:,} bytes from {SMALL:,} to {LARGE:,} documents)"
    )
    assert large[1] - small[1] <= MAX_EXTRA_DOCS_ALIVE, (
        f"documents alive at once grow with the collection: {small[1]} at {SMALL:,}, "
        f"{large[1]} at {LARGE:,}"
    )


def test_the_counter_sees_documents_kept_per_processor(
    tmp_path: Path, emulator, project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measure fails where it should: without the prefix keys (the old way), every
    processor's survivor and canonical document stay until the scan ends."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "m0001", ROOT / "migrations" / "0001_normalize_processor_heartbeats.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = {k: v for k, v in module.OPTIONS.items() if k != "prefix_keys"}
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    source = (ROOT / "migrations" / "0001_normalize_processor_heartbeats.py").read_text()
    assert "    prefix_keys=is_class_name,\n" in source
    (migrations / "0001_normalize_processor_heartbeats.py").write_text(
        source.replace("    prefix_keys=is_class_name,\n", "")
    )
    assert set(options) == set(module.OPTIONS) - {"prefix_keys"}
    monkeypatch.setattr(store_mod, "Doc", _CountedDoc)
    counts = []
    for total in (SMALL, LARGE):
        from google.cloud import firestore

        client = firestore.Client(project=f"{project_id}-{total}")
        seed(client, total)
        client.close()
        cfg = api.Config(
            project=f"{project_id}-{total}",
            state=tmp_path / f"old-{total}.db",
            migrations=migrations,
        )
        gc.collect()
        _CountedDoc.alive = _CountedDoc.most = 0
        api.upgrade(cfg, dry_run=True)
        counts.append(_CountedDoc.most)
    assert counts[1] - counts[0] > MAX_EXTRA_DOCS_ALIVE  # 2 per processor: 90 more


# ---- notes: read as they are used, never held ----------------------------------------------

FEW_NOTES, MANY_NOTES = 2_000, 20_000
# Measured: under 1 byte per note, for each format and the result. Before, when the result
# and the report each held the notes (and the JSON report one more copy as text): 333 bytes
# per note for text, 592 for JSON and Markdown.
MAX_BYTES_PER_NOTE = 20.0


def _run_with_notes(tmp_path: Path, count: int) -> tuple[State, str]:
    """A finished dry-run whose notes are `count` processors' (0001's note per processor)
    and, last, one conflict."""
    state = State.open(tmp_path / f"notes-{count}.db")
    run_id = state.start_run(
        invocation="inv",
        project="p",
        database="(default)",
        revision="0001",
        checksum="c" * 64,
        description="d",
        mode="dry-run",
    )
    for n in range(count):
        state.add_note(
            run_id,
            n,
            f"Synthetic{n:06d}Processor: 33 to merge -> KEEP (its last_heartbeat "
            "2026-12-02T18:20:15Z is the newest)",
            later=True,
        )
    state.add_note(run_id, count, "CONFLICT a -> b: b exists; skipped (on_conflict=skip)")
    state.finish_run(run_id, status="succeeded", counts={})
    return state, run_id


def _notes_peak(tmp_path: Path, count: int, fmt: str) -> int:
    """Peak bytes of Python allocations while a run's result and its report (in `fmt`)
    are made and read to the end; the report is checked as it streams: every note in
    it, the conflict first in text and Markdown."""
    state, run_id = _run_with_notes(tmp_path, count)
    target = Target(project="p", database="(default)", emulator_host="localhost:8080")
    gc.collect()
    tracemalloc.start()
    try:
        result = RunResult.from_row(state, state.run(run_id))
        assert len(result.notes) == count + 1
        assert result.notes[-1].startswith("CONFLICT")
        assert sum(1 for _ in result.notes) == count + 1
        shown, first = 0, None
        chunks = upgrade_chunks(
            state,
            [run_id],
            target,
            fmt,
            full=True,
            outcome=Outcome(command="upgrade", dry_run=True),
        )
        for chunk in chunks:
            shown += chunk.count("Processor: 33 to merge") + chunk.count("CONFLICT a")
            if first is None and ("CONFLICT a" in chunk or "Processor: 33" in chunk):
                first = chunk.index("CONFLICT a") if "CONFLICT a" in chunk else -1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state.conn.close()
    assert shown == count + 1, f"{shown} of {count + 1} notes in the {fmt} report"
    if fmt != "json":  # problems lead the notes
        assert first is not None and first >= 0, f"the conflict is not first in {fmt}"
    return peak


@pytest.mark.parametrize("fmt", ["json", "text", "markdown"])
def test_a_runs_notes_are_read_as_used_not_held(tmp_path: Path, fmt: str) -> None:
    """A run's notes (0001: one per processor, 30,000 at a million documents) are read
    from the state file by the report and the result as they use them: the peak memory of
    making both does not grow with the notes."""
    few = _notes_peak(tmp_path, FEW_NOTES, fmt)
    many = _notes_peak(tmp_path, MANY_NOTES, fmt)
    per_note = (many - few) / (MANY_NOTES - FEW_NOTES)
    assert per_note < MAX_BYTES_PER_NOTE, (
        f"the {fmt} report and the result hold the notes: {per_note:.1f} bytes per note "
        f"({few:,} -> {many:,} bytes from {FEW_NOTES:,} to {MANY_NOTES:,} notes)"
    )


def test_a_results_notes_read_like_a_list(tmp_path: Path) -> None:
    state, run_id = _run_with_notes(tmp_path, 3)
    notes = RunResult.from_row(state, state.run(run_id)).notes
    state.conn.close()
    expected = [
        *(
            f"Synthetic{n:06d}Processor: 33 to merge -> KEEP (its last_heartbeat "
            "2026-12-02T18:20:15Z is the newest)"
            for n in range(3)
        ),
        "CONFLICT a -> b: b exists; skipped (on_conflict=skip)",
    ]
    assert notes == expected and list(notes) == expected and len(notes) == 4
    assert notes[0] == expected[0] and notes[-1] == expected[-1] and notes[1:3] == expected[1:3]
    assert expected[2] in notes and "absent" not in notes
    with pytest.raises(IndexError):
        notes[4]
    with pytest.raises(IndexError):
        notes[-5]


def test_a_results_notes_are_read_from_its_state_file_wherever_the_caller_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file named relative to the working directory: the notes are read from that
    file after the caller changes directory, not from one of the same name elsewhere."""
    monkeypatch.chdir(tmp_path)
    state, run_id = _run_with_notes(Path("."), 2)
    notes = RunResult.from_row(state, state.run(run_id)).notes
    state.conn.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert len(notes) == 3 and notes[-1].startswith("CONFLICT")
    assert list(notes)[0].startswith("Synthetic000000Processor")
    assert not any(elsewhere.iterdir())  # nothing created where the caller went


# ---- Beam's coordinator: its workers' notes sorted on disk; notes pending, bounded ----------

SHARDS = 3
ODD_NOTES = [  # UTF-8's byte order is the code points' order: SQLite's sort is Python's
    "Zürich processor: kept",
    "Ångström processor: kept",
    "日本 processor: kept",
    "😀 processor: kept",
    "Synthetic000001Processor: 33 to merge -> KEEP (its last_heartbeat "
    "2026-12-02T18:20:15Z is the newest)",  # twice: a note a second worker wrote too
    "REFUSED delete users/u1: it has subcollections (orders)",
    "CONFLICT a -> b: b exists; skipped (on_conflict=skip)",
]


def _worker_notes(directory: Path, count: int) -> list[str]:
    """`count` processors' notes and ODD_NOTES, with the counters the workers write beside
    them, in SHARDS files (as Beam's WriteToText leaves them) in an order no file keeps."""
    notes = [
        f"Synthetic{n:06d}Processor: 33 to merge -> KEEP (its last_heartbeat "
        "2026-12-02T18:20:15Z is the newest)"
        for n in range(count)
    ] + ODD_NOTES
    shuffled = notes[:]
    random.Random(count).shuffle(shuffled)
    for shard in range(SHARDS):
        lines = []
        for text in shuffled[shard::SHARDS]:
            lines.append(json.dumps({"note": text}))
            lines.append(json.dumps({"count": "merged", "n": 1}))
        lines.append(json.dumps({"usage": {"reads": 10}}))
        path = directory / f"notes-{shard:05d}-of-{SHARDS:05d}.json"
        path.write_text("\n".join(lines) + "\n")
    return notes


def test_beams_notes_come_problems_first_then_in_text_order_whatever_the_sharding(
    tmp_path: Path,
) -> None:
    notes = _worker_notes(tmp_path, 40)
    with workfiles.read_outputs(str(tmp_path)) as outputs:
        found = list(outputs.notes)
    assert found == sorted(notes, key=lambda n: (not is_problem(n), n))
    assert found[0].startswith("CONFLICT") and found[1].startswith("REFUSED")
    assert found.count(ODD_NOTES[4]) == 2
    assert outputs.counts == {"merged": len(notes)}
    assert outputs.usage == {"reads": 10 * SHARDS}
    assert not list(tmp_path.glob("*.db"))  # sorted elsewhere, and gone


def _beam_notes_peak(tmp_path: Path, count: int) -> int:
    """Peak bytes of Python allocations while the coordinator's notes are read to the end
    from `count` processors' notes in the workers' files."""
    directory = tmp_path / f"journal-{count}"
    directory.mkdir()
    _worker_notes(directory, count)
    gc.collect()
    tracemalloc.start()
    try:
        with workfiles.read_outputs(str(directory)) as outputs:
            seen = sum(1 for _ in outputs.notes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count + len(ODD_NOTES)
    return peak


def test_beams_notes_are_sorted_on_disk_not_in_memory(tmp_path: Path) -> None:
    few = _beam_notes_peak(tmp_path, FEW_NOTES)
    many = _beam_notes_peak(tmp_path, MANY_NOTES)
    per_note = (many - few) / (MANY_NOTES - FEW_NOTES)
    assert per_note < MAX_BYTES_PER_NOTE, (
        f"the coordinator holds its workers' notes: {per_note:.1f} bytes per note "
        f"({few:,} -> {many:,} bytes from {FEW_NOTES:,} to {MANY_NOTES:,} notes)"
    )


def test_notes_kept_for_the_next_transaction_are_written_before_they_pile_up(
    tmp_path: Path,
) -> None:
    """A stretch with no transaction (Beam's coordinator noting its workers' notes) keeps
    fewer than PENDING_NOTES notes in memory; the rest are in the state file already."""
    state, run_id = _run_with_notes(tmp_path, 0)
    most = 0
    for n in range(1, 3 * PENDING_NOTES + 8):
        state.add_note(run_id, n, f"note {n}", later=True)
        most = max(most, len(state.pending_notes))
    assert most < PENDING_NOTES
    other = sqlite3.connect(state.path)  # what another process reads
    try:
        (written,) = other.execute(
            "SELECT COUNT(*) FROM notes WHERE run_id=?", (run_id,)
        ).fetchone()
    finally:
        other.close()
    assert written >= 3 * PENDING_NOTES
    assert state.notes(run_id) == [
        "CONFLICT a -> b: b exists; skipped (on_conflict=skip)",
        *(f"note {n}" for n in range(1, 3 * PENDING_NOTES + 8)),
    ]
