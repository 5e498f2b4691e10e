"""The processor_heartbeats incident as synthetic data, for the demo, tests and benchmarks.

As it was: 1,053 documents where ~30 were expected; 18 canonical, 1,035 legacy in both
formats (mostly `_None_`, which the old cleanup script missed), spread over the last days
with ~900 new legacy documents a day, some written within the last hour by old images.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any, Optional

from fsmigrate.heartbeats.classifier import COLLECTION, PHASE2_IDS

PHASE3 = [
    "PlayerGameSummaryProcessor",
    "AsyncUpcomingPlayerGameContextProcessor",
    "TeamDefenseGameSummaryProcessor",
    "PlayerCompositeFactorsProcessor",
    "TeamOffenseGameSummaryProcessor",
    "UpcomingTeamGameContextProcessor",
    "PlayerShotZoneAnalysisProcessor",
    "TeamDefenseZoneAnalysisProcessor",
    "PlayerDailyCacheProcessor",
    "MlFeatureStoreProcessor",
    "PredictionAccuracyProcessor",
    "GameRefereeAssignmentProcessor",
    "InjuryReportSummaryProcessor",
]
# Processors whose canonical document is missing: only legacy documents exist for them
# (a cleanup that only deleted would have lost their last heartbeat).
LEGACY_ONLY = ["PlayerPropPredictionProcessor", "GamebookBackfillProcessor"]

CANONICAL_IDS = PHASE3 + sorted(PHASE2_IDS.values())  # 13 + 5 = 18


def _heartbeat(
    name: str,
    beat: dt.datetime,
    rng: random.Random,
    run_id: Optional[str],
    data_date: Optional[str],
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "processor_name": name,
        "status": rng.choice(["running", "running", "running", "completed", "failed"]),
        "last_heartbeat": beat,
    }
    if run_id is not None:
        doc["run_id"] = run_id
        doc["data_date"] = data_date
        doc["progress"] = {"rows": rng.randrange(0, 50_000), "pct": round(rng.random() * 100, 1)}
    doc["service"] = (
        "nba-phase2-raw-processors"
        if name.startswith("p2_") or name in PHASE2_IDS
        else "nba-phase3-analytics-processors"
    )
    return doc


def documents(
    now: dt.datetime,
    *,
    legacy: int = 1035,
    days: float = 4.0,
    seed: int = 7,
    per_hour: float = 37.5,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(doc id, data) of the incident: the 18 canonical documents, then `legacy` legacy
    ones; the newest `per_hour` legacy documents have heartbeats within the last hour."""
    rng = random.Random(seed)
    for i, doc_id in enumerate(CANONICAL_IDS):
        stale = i % 6 == 5  # a few canonical documents are older than their legacy ones
        beat = now - (dt.timedelta(hours=30 + i) if stale else dt.timedelta(seconds=20 + 7 * i))
        yield doc_id, _heartbeat(doc_id, beat, rng, None, None)
    writers = list(PHASE2_IDS) + PHASE3 + LEGACY_ONLY
    recent = int(per_hour)
    used: set[str] = set()
    for n in range(legacy):
        name = writers[n % len(writers)]
        if n < recent:
            beat = now - dt.timedelta(seconds=rng.uniform(5, 3500))
        else:
            beat = now - dt.timedelta(seconds=rng.uniform(3700, days * 86400))
        run_id = f"{rng.getrandbits(32):08x}"
        while run_id in used:
            run_id = f"{rng.getrandbits(32):08x}"
        used.add(run_id)
        if n % 4 == 3:  # the older, date-suffixed format
            date = (beat - dt.timedelta(days=1)).date().isoformat()
            doc_id = f"{name}_{date}_{run_id}"
        else:
            date = None
            doc_id = f"{name}_None_{run_id}"
        yield doc_id, _heartbeat(name, beat, rng, run_id, date)


def seed(
    client: Any,
    now: Optional[dt.datetime] = None,
    *,
    collection: str = COLLECTION,
    batch_size: int = 500,
    **options: Any,
) -> int:
    """Write the incident into `collection` (emulator only: callers check); return count."""
    now = now or dt.datetime.now(dt.timezone.utc)
    batch, pending, count = client.batch(), 0, 0
    for doc_id, data in documents(now, **options):
        batch.set(client.collection(collection).document(doc_id), data)
        pending += 1
        count += 1
        if pending == batch_size:
            batch.commit()
            batch, pending = client.batch(), 0
    if pending:
        batch.commit()
    return count


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m fsmigrate.heartbeats.incident --project P`: seed the incident into the
    emulator."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m fsmigrate.heartbeats.incident",
        description="Seed the processor_heartbeats incident into the Firestore emulator.",
    )
    parser.add_argument("--project", default=os.environ.get("FSMIGRATE_PROJECT"))
    parser.add_argument("--legacy", type=int, default=1035, help="legacy documents to write")
    args = parser.parse_args(argv)
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        print(
            "FAILED: FIRESTORE_EMULATOR_HOST is not set; the incident is only seeded into "
            "an emulator",
            file=sys.stderr,
        )
        return 2
    if not args.project:
        print("FAILED: no project: pass --project or set FSMIGRATE_PROJECT", file=sys.stderr)
        return 2
    from google.cloud import firestore

    count = seed(firestore.Client(project=args.project), legacy=args.legacy)
    print(
        f"seeded {count} documents into {COLLECTION} of project {args.project} "
        f"({len(CANONICAL_IDS)} canonical, {args.legacy} legacy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
