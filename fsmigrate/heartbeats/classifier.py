"""The `processor_heartbeats` collection: the document ID classifier (pure).

One document per processor is the design. Canonical IDs:
  - a phase 3+ processor: its class name, e.g. `PlayerGameSummaryProcessor`;
  - a phase 2 processor: `p2_<dataset>.<table>`, e.g. `p2_nba_raw.nbac_team_boxscore`
    (and a few known IDs without a dataset part, e.g. `p2_nbac_player_boxscores`).
Legacy IDs (old code built them from run data; they must be normalised away):
  - run-suffixed:  `<ClassName>_None_<8 hex run id>`;
  - date-suffixed: `<ClassName>_<YYYY-MM-DD>_<8 hex run id>` (a real calendar date).
Everything else is UNKNOWN: reported, never deleted. Patterns are matched exactly
(whole ID, ASCII only); there are no substring tests.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import NamedTuple, Optional

COLLECTION = "processor_heartbeats"

CANONICAL_PROCESSOR = "canonical_processor"
CANONICAL_PHASE2 = "canonical_phase2"
LEGACY_RUN = "legacy_run"
LEGACY_DATE = "legacy_date"
UNKNOWN = "unknown"
KINDS = (CANONICAL_PROCESSOR, CANONICAL_PHASE2, LEGACY_RUN, LEGACY_DATE, UNKNOWN)
LEGACY_KINDS = (LEGACY_RUN, LEGACY_DATE)
CANONICAL_KINDS = (CANONICAL_PROCESSOR, CANONICAL_PHASE2)

_CLASS = r"[A-Z][A-Za-z0-9]*Processor"
_RUN = r"[0-9a-f]{8}"
_CLASS_RE = re.compile(_CLASS)
_LEGACY_RUN_RE = re.compile(rf"(?P<name>{_CLASS})_None_(?P<run>{_RUN})")
_LEGACY_DATE_RE = re.compile(
    rf"(?P<name>{_CLASS})_(?P<date>[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})_(?P<run>{_RUN})"
)
_PHASE2_RE = re.compile(r"p2_[a-z0-9_]+\.[a-z0-9_]+")
_PHASE2_ANY_RE = re.compile(r"p2_[a-z0-9_]+(\.[a-z0-9_]+)?")

# Phase 2 processors: class name -> canonical `p2_...` ID (the table they write). The
# migration can pass its own mapping; these are the processors the incident involved.
PHASE2_IDS: Mapping[str, str] = {
    "NbacTeamBoxscoreProcessor": "p2_nba_raw.nbac_team_boxscore",
    "BdlLiveBoxscoresProcessor": "p2_nba_raw.bdl_live_boxscores",
    "OddsApiGameLinesProcessor": "p2_nba_raw.odds_api_game_lines",
    "BettingprosPlayerPointsPropsProcessor": "p2_nba_raw.bettingpros_player_points_props",
    "NbacPlayerBoxscoreProcessor": "p2_nbac_player_boxscores",
}


class Classification(NamedTuple):
    kind: str
    canonical_id: Optional[str]  # the ID the document should have; None when unknown
    processor: Optional[str] = None  # the class name inside a legacy ID
    run_id: Optional[str] = None
    date: Optional[str] = None

    @property
    def is_legacy(self) -> bool:
        return self.kind in LEGACY_KINDS


class Classifier:
    """`classify(doc_id)`; `phase2` maps class names of phase 2 processors to their IDs."""

    def __init__(self, phase2: Mapping[str, str] = PHASE2_IDS) -> None:
        self.phase2 = dict(phase2)
        for name, target in self.phase2.items():
            if not (
                isinstance(name, str)
                and isinstance(target, str)
                and _CLASS_RE.fullmatch(name)
                and _PHASE2_ANY_RE.fullmatch(target)
            ):
                raise ValueError(
                    f"bad phase 2 mapping {name!r} -> {target!r}: expected a "
                    "processor class name -> p2_<dataset>.<table> (or p2_<table>)"
                )
        # canonical phase 2 IDs without a dataset part exist only when configured
        self.phase2_ids = frozenset(self.phase2.values())

    def canonical_for(self, processor: str) -> str:
        return self.phase2.get(processor, processor)

    def classify(self, doc_id: str) -> Classification:
        if not isinstance(doc_id, str):
            return Classification(UNKNOWN, None)
        if _CLASS_RE.fullmatch(doc_id):
            return Classification(CANONICAL_PROCESSOR, doc_id, doc_id)
        if _PHASE2_RE.fullmatch(doc_id) or doc_id in self.phase2_ids:
            return Classification(CANONICAL_PHASE2, doc_id)
        match = _LEGACY_RUN_RE.fullmatch(doc_id)
        if match:
            name = match["name"]
            return Classification(LEGACY_RUN, self.canonical_for(name), name, match["run"])
        match = _LEGACY_DATE_RE.fullmatch(doc_id)
        if match and _is_date(match["date"]):
            name = match["name"]
            return Classification(
                LEGACY_DATE, self.canonical_for(name), name, match["run"], match["date"]
            )
        return Classification(UNKNOWN, None)


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


_default = Classifier()


def classify(doc_id: str) -> Classification:
    """Classify with the shipped phase 2 mapping (see `Classifier` to configure one)."""
    return _default.classify(doc_id)
