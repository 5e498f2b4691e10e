"""The runnable examples of the docs: fenced blocks marked by an HTML comment before them.

    <!-- test: run -->            the next ```sh block runs (exit 0 expected)
    <!-- test: run, exit N -->    ... and must exit with N
    <!-- test: file PATH -->      the next block is written to PATH (relative)
    <!-- test: python -->        the next ```python block runs with the test's Python
    <!-- test: hidden
    commands                      set-up the reader does not need to see; runs as shell
    -->

A page becomes one bash script, its steps in page order, so what one block exports (the
emulator's address, a run id) the next one sees, as in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"

_MARKER = re.compile(
    r"^<!-- test: (?P<what>[^\n]*?)(?: -->|\n(?P<body>.*?)-->)", re.DOTALL | re.MULTILINE
)
_FENCE = re.compile(r"\s*```[^\n]*\n(?P<code>.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Step:
    kind: str  # run, file, python, hidden
    line: int
    code: str
    path: str = ""
    exit_code: int = 0


class MarkerError(ValueError):
    pass


def steps(page: Path) -> list[Step]:
    """The marked steps of a page, in order; a marker not followed by its block raises."""
    text = page.read_text()
    found = []
    for match in _MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        what = match.group("what").strip()
        where = f"{page.relative_to(DOCS.parent)}:{line}"
        if what == "hidden":
            found.append(Step("hidden", line, match.group("body") or ""))
            continue
        fence = _FENCE.match(text, match.end())
        if fence is None:
            raise MarkerError(f"{where}: `<!-- test: {what} -->` is not followed by a fenced block")
        code = fence.group("code")
        if what == "python":
            found.append(Step("python", line, code))
        elif what.startswith("file "):
            found.append(Step("file", line, code, path=what[len("file ") :].strip()))
        elif what == "run" or what.startswith("run, exit "):
            exit_code = int(what[len("run, exit ") :]) if what != "run" else 0
            found.append(Step("run", line, code, exit_code=exit_code))
        else:
            raise MarkerError(f"{where}: unknown marker `<!-- test: {what} -->`")
    return found


def _heredoc(code: str) -> str:
    tag = "DOCS_EXAMPLE_EOF"
    assert tag not in code
    return f"<<'{tag}'\n{code}\n{tag}"


def script(page: Path) -> str:
    """The page's steps as one bash script (set -eu)."""
    out = ["set -eu"]  # no pipefail: `cmd | head` is fine in a reader's shell
    name = page.relative_to(DOCS.parent)
    for step in steps(page):
        out.append(f"echo {shlex.quote(f'### {name}:{step.line} ({step.kind})')} >&2")
        if step.kind == "file":
            out.append(f'mkdir -p "$(dirname {shlex.quote(step.path)})"')
            out.append(f"cat > {shlex.quote(step.path)} {_heredoc(step.code)}")
        elif step.kind == "python":
            out.append(f"python - {_heredoc(step.code)}")
        elif step.exit_code:
            out.append(
                f"set +e\n(\n{step.code}\n)\nrc=$?\nset -e\n"
                f'[ "$rc" = {step.exit_code} ] || {{ echo "expected exit {step.exit_code}, '
                f'got $rc" >&2; exit 1; }}'
            )
        else:
            out.append(step.code)
    return "\n".join(out) + "\n"


def pages() -> list[Path]:
    """Every page with at least one marked step."""
    return sorted(p for p in DOCS.rglob("*.md") if _MARKER.search(p.read_text()))
