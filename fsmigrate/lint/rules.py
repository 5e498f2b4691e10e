"""The lint rules: each code, its name, severity and purpose (the README's Lint table),
and what a finding is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str
    silenceable: bool = True


RULES: dict[str, Rule] = {
    r.code: r
    for r in [
        Rule(
            "FSM001",
            "syntax-error",
            ERROR,
            "the file does not parse (or is not UTF-8)",
            silenceable=False,
        ),
        Rule(
            "FSM002",
            "useless-allow",
            WARNING,
            "an allow comment names no rule, or silences nothing on its line",
        ),
        Rule(
            "FSM101",
            "client-write",
            ERROR,
            "a write through the Firestore client instead of an operation yielded to ctx",
        ),
        Rule(
            "FSM102",
            "own-client",
            ERROR,
            "the script creates its own Firestore client instead of reading through ctx",
        ),
        Rule(
            "FSM201",
            "delete-every-document",
            ERROR,
            "every document of an unfiltered scan is deleted, with no condition in between",
        ),
        Rule(
            "FSM301",
            "plan-not-generator",
            ERROR,
            "plan(ctx) is missing, async, or does not yield its operations",
        ),
        Rule("FSM302", "missing-docstring", ERROR, "the script has no module docstring"),
        Rule(
            "FSM303",
            "revision-name",
            ERROR,
            "revision missing, not a string literal, or unlike the file name NNNN_slug.py",
        ),
        Rule(
            "FSM304",
            "down-revision-literal",
            ERROR,
            "down_revision missing, or not a string literal or None",
        ),
        Rule(
            "FSM305",
            "revision-chain",
            ERROR,
            "duplicate revisions, an unknown down_revision, several heads, or a cycle",
        ),
        Rule(
            "FSM401",
            "non-deterministic",
            WARNING,
            "random, uuid1/uuid4, now()/today()/time(): the dry-run, the reviewed plan and a "
            "resumed apply can differ",
        ),
    ]
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    code: str
    message: str

    @property
    def severity(self) -> str:
        return RULES[self.code].severity

    @property
    def name(self) -> str:
        return RULES[self.code].name

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass(frozen=True)
class Header:
    """A script's literal revision and down_revision (None when not a literal)."""

    path: str
    revision: Optional[str]
    down_revision: Optional[str]
    down_known: bool  # down_revision is a string literal or None
    down_line: int
