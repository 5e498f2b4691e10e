"""The processor_heartbeats domain, kept out of the framework's core (nothing in
`fsmigrate/` outside this package imports it):

- `classifier`: which document IDs are canonical, legacy (and canonical for what) or
  unknown; used by migration 0001 and `bin/cleanup-heartbeat-docs.py`;
- `check`: `fsmigrate check heartbeats`, a plugin registered through the entry-point
  group `fsmigrate.checks` (see pyproject.toml);
- `incident`: the incident as synthetic data (demo, tests, benchmarks).

The classifier's API is re-exported here: `from fsmigrate.heartbeats import Classifier`.
"""

from __future__ import annotations

from fsmigrate.heartbeats.classifier import (
    CANONICAL_KINDS,
    CANONICAL_PHASE2,
    CANONICAL_PROCESSOR,
    COLLECTION,
    KINDS,
    LEGACY_DATE,
    LEGACY_KINDS,
    LEGACY_RUN,
    PHASE2_IDS,
    UNKNOWN,
    Classification,
    Classifier,
    classify,
)

__all__ = [
    "CANONICAL_KINDS",
    "CANONICAL_PHASE2",
    "CANONICAL_PROCESSOR",
    "COLLECTION",
    "KINDS",
    "LEGACY_DATE",
    "LEGACY_KINDS",
    "LEGACY_RUN",
    "PHASE2_IDS",
    "UNKNOWN",
    "Classification",
    "Classifier",
    "classify",
]
