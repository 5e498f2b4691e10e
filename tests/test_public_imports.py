"""Every import path the README and the docs document (for scripts, plugin authors, teams'
tests and the Python API) keeps working whatever the package's inside looks like."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

DOCUMENTED = [
    (
        "fsmigrate.api",
        [
            "Config",
            "upgrade",
            "rerun",
            "apply_plan",
            "restore",
            "status",
            "history",
            "verify",
            "audit",
            "check",
            "prune",
            "RunResult",
            "UpgradeResult",
            "Progress",
            "NoProgress",
            "FsMigrateError",
        ],
    ),
    ("fsmigrate.distributed", ["scan"]),
    ("fsmigrate.normalize", ["keep_newest"]),
    ("fsmigrate.checks", ["CheckResult", "Metric", "Option", "options", "Series", "Point"]),
    ("fsmigrate.durations", ["parse_window", "format_window"]),
    ("fsmigrate.times", ["parse_window", "rfc3339"]),
    ("fsmigrate.errors", ["FsMigrateError", "UsageError"]),
    ("fsmigrate.testing", ["FirestoreEmulator", "started_emulator"]),
    ("fsmigrate.testing.harness", ["Harness"]),
    (
        "fsmigrate.testing.checks",
        [
            "test_dry_run_matches_apply",
            "test_plan_never_writes",
            "test_repeatable_is_idempotent",
            "test_single_head",
        ],
    ),
]


@pytest.mark.parametrize("module, names", DOCUMENTED, ids=[m for m, _ in DOCUMENTED])
def test_documented_path_imports(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert missing == []


def test_every_import_in_the_readme_is_covered() -> None:
    """A new `from fsmigrate... import` in the docs must be added above (and work)."""
    text = "\n".join(page.read_text() for page in PAGES)
    found = set(re.findall(r"from (fsmigrate(?:\.\w+)*) import", text))
    listed = {module for module, _ in DOCUMENTED} | {"fsmigrate"}
    assert found <= listed, found - listed
    for module in found:
        importlib.import_module(module)
