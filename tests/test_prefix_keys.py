"""Prefix keys (issue 24): migration 0001 declares a processor's class name a prefix key,
so the local runner merges each processor once its scan has passed its IDs, and the Beam
runner merges them in the range that holds their name, without the shuffle. The result
must be the same as without the declaration (every key through the dict / GroupByKey),
on both runners, including where the declaration is hardest: a class name that is a
prefix of another (`AlphaProcessor`, `AlphaProcessorBetaProcessor`), processors whose
documents span several ranges, phase 2 documents (their key is not a prefix) and
unknown IDs."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest

from fsmigrate import api
from fsmigrate.errors import MigrationFailed
from helpers import write_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "migrations" / "0001_normalize_processor_heartbeats.py"
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
DECLARED = "    prefix_keys=is_class_name,\n"


def heartbeats(seed: int = 3) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    names = [
        "AlphaProcessor",
        "AlphaProcessorBetaProcessor",  # its IDs lie inside AlphaProcessor's
        "ZetaProcessor",
        *(f"Load{i:02d}Processor" for i in range(12)),
        "NbacTeamBoxscoreProcessor",  # phase 2: legacy IDs merge into p2_nba_raw...
    ]
    docs: list[tuple[str, dict]] = []
    for i, name in enumerate(names):
        if i % 3:  # some processors have no canonical document yet
            docs.append((name, {"last_heartbeat": NOW - dt.timedelta(hours=i)}))
        for n in range(rng.choice([1, 3, 40, 400])):  # 400: spans several ranges
            beat = NOW - dt.timedelta(minutes=rng.uniform(1, 5000))
            suffix = f"{beat.date().isoformat()}_{n:08x}" if n % 5 == 4 else f"None_{n:08x}"
            docs.append((f"{name}_{suffix}", {"last_heartbeat": beat, "run_id": f"{n:08x}"}))
    docs.append(("p2_nba_raw.nbac_team_boxscore", {"last_heartbeat": NOW}))
    docs += [(f"weird-{i}", {"x": i}) for i in range(3)]  # unknown: left alone
    return docs


def seed(client: Any, docs: list[tuple[str, dict]]) -> None:
    for start in range(0, len(docs), 500):
        batch = client.batch()
        for doc_id, data in docs[start : start + 500]:
            batch.set(client.collection("processor_heartbeats").document(doc_id), data)
        batch.commit()


def migrations_dir(tmp_path: Path, declared: bool) -> Path:
    folder = tmp_path / ("declared" if declared else "undeclared")
    folder.mkdir(parents=True)
    source = SCRIPT.read_text()
    assert DECLARED in source
    if not declared:
        source = source.replace(DECLARED, "").replace(
            "key_is_prefix = normalization.key_is_prefix\n", ""
        )
    (folder / SCRIPT.name).write_text(source)
    return folder


def outcome(tmp_path: Path, project: str, runner: str, declared: bool) -> tuple:
    from google.cloud import firestore

    client = firestore.Client(project=project)
    seed(client, heartbeats())
    cfg = api.Config(
        project=project,
        state=tmp_path / f"{runner}-{declared}.db",
        migrations=migrations_dir(tmp_path / f"{runner}-{declared}", declared),
    )
    run = api.upgrade(cfg, api.RunOptions(runner=runner, workers=2)).runs[0]
    audit = api.audit(cfg, run.run_id)
    ops = sorted(
        (op["kind"], op["path"], op["status"])
        for op in (json.loads(line) for line in "".join(audit.chunks("jsonl")).splitlines())
    )
    final = {s.id: s.to_dict() for s in client.collection("processor_heartbeats").stream()}
    client.close()
    notes = sorted(n for n in run.notes if not n.startswith("beam:"))
    return final, run.counts, ops, notes


def test_prefix_keys_give_the_same_result_on_every_path(
    tmp_path: Path, emulator, project_id: str
) -> None:
    paths = {
        (runner, declared): outcome(
            tmp_path, f"{project_id}-{runner}-{int(declared)}", runner, declared
        )
        for runner in ("local", "beam")
        for declared in (True, False)
    }
    reference = paths[("local", False)]  # the old way: every key kept to the end
    final = reference[0]
    assert "AlphaProcessorBetaProcessor" in final and "AlphaProcessor" in final
    assert "p2_nba_raw.nbac_team_boxscore" in final and "weird-0" in final
    assert not any("_None_" in doc_id for doc_id in final)
    for path, found in paths.items():
        assert found[0] == final, path  # the same documents, field for field
        assert found[1] == reference[1], path  # the same counts
        assert found[2] == reference[2], path  # the same operations, all committed
        assert found[3] == reference[3], path  # the same notes


def test_a_false_prefix_declaration_stops_the_run_before_planning_the_document(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    seed(fs_client, [("FooProcessor_None_00000001", {}), ("zzz", {}), ("other", {})])
    migrations = tmp_path / "migrations"
    write_script(
        migrations,
        "0001",
        None,
        """
def plan(ctx):
    yield from ctx.normalize(
        "processor_heartbeats",
        lambda i: "FooProcessor" if i == "zzz" else (i if i != "other" else None),
        prefix_keys=lambda key: True,
    )
""",
    )
    cfg = api.Config(project=project_id, state=tmp_path / "s.db", migrations=migrations)
    with pytest.raises(MigrationFailed, match="'zzz' has the key 'FooProcessor'"):
        api.upgrade(cfg)
    left = {s.id for s in fs_client.collection("processor_heartbeats").stream()}
    assert "zzz" in left  # nothing planned for it


def test_a_false_prefix_declaration_stops_a_beam_worker(
    tmp_path: Path, emulator, fs_client, project_id: str
) -> None:
    seed(fs_client, [(f"d{i:03d}", {}) for i in range(30)])
    migrations = tmp_path / "migrations"
    write_script(
        migrations,
        "0001",
        None,
        """
from fsmigrate.distributed import scan

source = scan("processor_heartbeats")

def key(doc):
    return "e0" if doc.id == "d029" else doc.id

def key_is_prefix(key):
    return True

def merge(ctx, key, docs):
    return []
""",
    )
    cfg = api.Config(project=project_id, state=tmp_path / "s.db", migrations=migrations)
    with pytest.raises(Exception, match="'d029' has the key 'e0'"):
        api.upgrade(cfg, api.RunOptions(runner="beam", workers=2))
