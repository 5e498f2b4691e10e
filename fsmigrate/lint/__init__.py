"""`fsmigrate lint`: static checks of migration scripts, before review.

Pure `ast` over the files' text: nothing is imported or executed, Firestore is never
contacted, no credentials are needed. Each finding has a code (`RULES`), a severity, and
a one-line message with its file and line. A finding is silenced by a comment on the line
it names: `# fsmigrate: allow FSM201` (several: `# fsmigrate: allow FSM201, FSM401`).
The rules are listed in `rules`, checked on each file's syntax tree by `checker` (the
FSM201 analysis in `deletes`); this module finds the files, silences, checks the revision
chain, and renders.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Optional

from fsmigrate.errors import ScriptError, UsageError
from fsmigrate.lint import checker
from fsmigrate.lint.rules import ERROR, RULES, WARNING, Finding, Header
from fsmigrate.scripts import loader as scripts

__all__ = ["ERROR", "WARNING", "RULES", "Finding", "Report", "lint_paths", "lint_source", "chunks"]

ALLOW = re.compile(r"#\s*fsmigrate:\s*allow\b(.*)$", re.IGNORECASE)
CODE = re.compile(r"^[A-Z]{3}[0-9]{3}$")
# file roles: a migration script gets every check; a helper module only the code checks
SCRIPT, HELPER = "script", "helper"


@dataclass
class Report:
    """What `lint` found: findings in file and line order, plus counts.

    Attributes:
        files: Files checked.
        findings: The findings, in file and line order.
        silenced: Findings an allow comment silenced.
    """

    files: int
    findings: list[Finding] = field(default_factory=list)
    silenced: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == WARNING)

    @property
    def ok(self) -> bool:
        """No errors (warnings alone do not fail a lint)."""
        return self.errors == 0

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "errors": self.errors,
            "warnings": self.warnings,
            "silenced": self.silenced,
            "findings": [f.to_json() for f in self.findings],
        }

    def chunks(self, fmt: str) -> Iterator[str]:
        """The report as text (one `path:line:col: CODE severity: message` line per
        finding, then a summary) or json (one object)."""
        return chunks(self, fmt)


# ---- silencing ---------------------------------------------------------------------------


@dataclass
class _Allow:
    line: int
    column: int
    codes: list[str]
    bad: list[str]


def allows(source: str) -> list[_Allow]:
    """The `# fsmigrate: allow CODE[, CODE]` comments of a source (real comments only: the
    text inside a string does not count)."""
    found: list[_Allow] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            match = ALLOW.search(tok.string)
            if not match:
                continue
            words = [w for w in re.split(r"[\s,]+", match.group(1).strip()) if w]
            codes = [w.upper() for w in words if CODE.match(w.upper())]
            bad = [w for w in words if not CODE.match(w.upper()) or w.upper() not in RULES]
            found.append(_Allow(tok.start[0], tok.start[1], [c for c in codes if c in RULES], bad))
    except (tokenize.TokenError, SyntaxError):  # the parse error is reported as FSM001
        pass
    return found


def _silence(path: str, source: str, findings: list[Finding]) -> tuple[list[Finding], int]:
    """Drop the findings a comment on their line allows; report allow comments that name
    an unknown code or silence nothing (FSM002)."""
    comments = allows(source)
    by_line: dict[int, _Allow] = {c.line: c for c in comments}
    kept: list[Finding] = []
    used: set[tuple[int, str]] = set()
    for f in findings:
        allow = by_line.get(f.line)
        if allow is not None and f.code in allow.codes and RULES[f.code].silenceable:
            used.add((f.line, f.code))
            continue
        kept.append(f)
    for c in comments:
        for word in c.bad:
            kept.append(
                Finding(
                    path,
                    c.line,
                    c.column + 1,
                    "FSM002",
                    f"`# fsmigrate: allow {word}` names no rule; the codes are "
                    "listed in the README (Lint)",
                )
            )
        for code in c.codes:
            if (c.line, code) not in used:
                kept.append(
                    Finding(
                        path,
                        c.line,
                        c.column + 1,
                        "FSM002",
                        f"`# fsmigrate: allow {code}` silences nothing on this line; remove it",
                    )
                )
    return kept, len(used)


# ---- files ---------------------------------------------------------------------------------


def lint_source(source: str, path: str, role: str = SCRIPT) -> tuple[list[Finding], int]:
    """(findings, silenced) of one file's text; `path` is only used in messages and to
    compare the revision with the file name."""
    findings = checker.check(source, path, scripts_rules=role == SCRIPT)
    if findings and findings[0].code == "FSM001":
        return findings, 0
    return _silence(path, source, findings)


def _files(paths: Sequence[Path]) -> Iterator[tuple[Path, str]]:
    """(file, role) for every file to lint. A directory is read like the loader reads the
    migrations directory: `NNNN_slug.py` scripts, misnamed `.py` files (reported), helper
    modules starting with `_`; hidden files, other files and subdirectories are not read."""
    for path in paths:
        if path.is_dir():
            for entry in sorted(p for p in path.iterdir() if p.is_file()):
                kind = scripts.name_kind(entry.name)
                if kind in ("script", "misnamed"):
                    yield entry, SCRIPT
                elif entry.name.startswith("_") and entry.name.endswith(".py"):
                    yield entry, HELPER
        elif path.is_file():
            if not path.name.lower().endswith(".py"):
                raise UsageError(
                    f"{path} is not a Python file; lint takes migration scripts "
                    "or the migrations directory"
                )
            yield path, HELPER if path.name.startswith("_") else SCRIPT
        elif not path.exists():
            raise UsageError(
                f"{path} does not exist; pass migration scripts or the "
                "migrations directory (--migrations)"
            )
        else:
            raise UsageError(f"{path} is neither a file nor a directory")


def _read(path: Path) -> tuple[Optional[str], Optional[Finding]]:
    try:
        return path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Finding(
            str(path), 1, 1, "FSM001", f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
        )
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def lint_paths(paths: Iterable[Path]) -> Report:
    """Lint files and directories. Directories also get the revision chain check
    (FSM305): duplicate revisions, unknown down_revisions, several heads, cycles."""
    paths = [Path(p) for p in paths]
    directories = {p for p in paths if p.is_dir()}
    report = Report(files=0)
    heads: dict[Path, list[Header]] = {}
    for path, role in _files(paths):
        report.files += 1
        source, problem = _read(path)
        if problem is not None:
            report.findings.append(problem)
            continue
        assert source is not None
        found, silenced = lint_source(source, str(path), role)
        report.findings.extend(found)
        report.silenced += silenced
        if path.parent in directories and scripts.name_kind(path.name) == "script":
            heads.setdefault(path.parent, []).append(checker.header(source, str(path)))
    for headers in heads.values():
        report.findings.extend(_chain(headers))
    report.findings.sort(key=lambda f: (f.path, f.line, f.column, f.code))
    return report


def _not_loaded(ctx: object) -> NoReturn:
    """The plan of a script the linter read but did not import (only its chain is checked)."""
    raise RuntimeError("the linter does not import scripts: this plan cannot run")


def _chain(headers: list[Header]) -> list[Finding]:
    """The revision chain of one directory, from the literal revisions; skipped when a
    header is not literal (already reported)."""
    if any(h is None or h.revision is None or not h.down_known for h in headers):
        return []
    built = [
        scripts.Script(h.revision, h.down_revision, Path(h.path), "", "", plan=_not_loaded)
        for h in headers
        if h.revision is not None
    ]
    try:
        scripts.build_chain(built)
    except ScriptError as exc:
        paths = [str(p) for p in getattr(exc, "paths", [getattr(exc, "path", "")])]
        where = next((h for h in headers if h.path in paths), headers[0])
        return [Finding(where.path, where.down_line, 1, "FSM305", str(exc))]
    return []


# ---- rendering -----------------------------------------------------------------------------


def chunks(report: Report, fmt: str) -> Iterator[str]:
    """text: `path:line:col: CODE severity: message` lines and a summary; json: one object."""
    if fmt == "json":
        yield json.dumps(report.to_json(), indent=2) + "\n"
        return
    for f in report.findings:
        yield f"{f.path}:{f.line}:{f.column}: {f.code} {f.severity}: {f.message}\n"
    yield _summary(report) + "\n"


def _summary(report: Report) -> str:
    files = f"{report.files} file{'s' if report.files != 1 else ''}"
    silenced = f", {report.silenced} silenced" if report.silenced else ""
    if not report.findings:
        return f"{files} checked: no problems{silenced}"
    return (
        f"{files} checked: {report.errors} error{'s' if report.errors != 1 else ''}, "
        f"{report.warnings} warning{'s' if report.warnings != 1 else ''}{silenced}"
    )
