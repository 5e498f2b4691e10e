"""The docs' examples, run and compared with what they show, through Sybil.

A fenced block runs when an HTML comment marks it; the output a page shows is compared with
what the command printed. The markers:

    <!-- test: run -->            the next ```sh block runs (exit 0 expected); a ```text
                                  block right after it is its output, compared
    <!-- test: run, exit N -->    ... and must exit with N
    <!-- test: console -->        the next ```console block: each `$ COMMAND` line runs, and
                                  the lines up to the next `$` are its output, compared
    <!-- test: file PATH -->      the next block is written to PATH (relative)
    <!-- test: python -->        the next ```python block runs with the test's Python
    <!-- test: emulator -->      the next block is `eval "$(fsmigrate emulator start)"`; a
                                  test that has an emulator points the page at it instead
    <!-- test: not run: WHY -->  the next block is shown, not run (a real project, an
                                  outage); a page must say why

An output is compared line by line after normalising what changes from run to run (run
ids, times, the emulator's port, the host name, the home directory: `normalise`). A line
`...` stands for any lines (none included), and `...` inside a line for any text, as in
doctest. With FSMIGRATE_DOCS_UPDATE=1 a sample that differs is rewritten with what the
command printed (normalised) instead of failing: review the page's diff and commit it.

The steps of a page run in order in one bash process (`Shell`), as in a reader's terminal.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, RawFencedCodeBlockLexer

DOCS = Path(__file__).resolve().parent.parent / "docs"
EMULATOR_START = 'eval "$(fsmigrate emulator start)"'

_DIRECTIVES = DirectiveInHTMLCommentLexer(directive="test", arguments=r"[^\n]*?")
_FENCES = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)$\n", re.MULTILINE))
OUTPUT_LANGUAGES = ("text", "")  # a block of these right after a run step is its output
SHOWN_LANGUAGES = ("sh", "bash", "console", "text", "")  # commands and what they print


class MarkerError(ValueError):
    pass


@dataclass(frozen=True)
class Fence:
    start: int
    end: int
    language: str
    code: str


@dataclass(frozen=True)
class Step:
    kind: str  # run, console, file, python, emulator, not run
    line: int
    code: str
    path: str = ""
    exit_code: int = 0
    output: Optional[str] = None  # what the page shows it prints (run), None: not shown
    commands: tuple[tuple[str, str], ...] = ()  # console: (command, its output)
    span: tuple[int, int] = (0, 0)  # where the page shows the output (run) or the block (console)


def fences(document: Document) -> list[Fence]:
    found = []
    for region in _FENCES(document):
        source = str(region.lexemes["source"])
        found.append(
            Fence(region.start, region.end, region.lexemes["language"].strip(), source.rstrip("\n"))
        )
    return sorted(found, key=lambda f: f.start)


def _next_fence(text: str, at: int, blocks: list[Fence]) -> Optional[Fence]:
    """The fence that starts at `at`, blank lines aside."""
    for fence in blocks:
        if fence.start >= at:
            return fence if not text[at : fence.start].strip() else None
    return None


def _inside(text: str, fence: Fence) -> tuple[int, int]:
    """Where a fenced block's lines are in the page: after its opening line, before its
    closing one."""
    start = text.index("\n", fence.start) + 1
    end = text.rindex("\n", start - 1, fence.end) + 1 if fence.code else start
    return start, end


def _console(code: str) -> tuple[tuple[str, str], ...]:
    commands: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        else:
            raise MarkerError(f"a console block starts with {line!r}, not `$ COMMAND`")
    return tuple((command, "\n".join(out)) for command, out in commands)


def _name(path: str) -> str:
    """A page's path as the repository names it (docs/tutorial.md)."""
    try:
        return str(Path(path).relative_to(DOCS.parent))
    except ValueError:
        return path


def parse_steps(document: Document) -> Iterator[Region]:
    """Sybil's parser: a Region for each marked step (its marker, its block, its output)."""
    text = document.text
    blocks = fences(document)
    for directive in _DIRECTIVES(document):
        what = directive.lexemes["arguments"].strip()
        line = text.count("\n", 0, directive.start) + 1
        where = f"{_name(document.path)}:{line}"
        closed = text.index("-->", directive.end) + len("-->")  # the lexer ends before it
        fence = _next_fence(text, closed, blocks)
        if fence is None:
            raise MarkerError(f"{where}: `<!-- test: {what} -->` is not followed by a fenced block")
        end = fence.end
        if what == "python":
            step = Step("python", line, fence.code)
        elif what.startswith("file "):
            step = Step("file", line, fence.code, path=what[len("file ") :].strip())
        elif what == "emulator":
            if fence.code.strip() != EMULATOR_START:
                raise MarkerError(f"{where}: `test: emulator` marks `{EMULATOR_START}` only")
            step = Step("emulator", line, fence.code)
        elif what.startswith("not run:") and what[len("not run:") :].strip():
            step = Step("not run", line, fence.code)
        elif what == "console":
            if fence.language != "console":
                raise MarkerError(f"{where}: `test: console` marks a ```console block")
            try:
                commands = _console(fence.code)
                step = Step(
                    "console", line, fence.code, commands=commands, span=_inside(text, fence)
                )
            except MarkerError as exc:
                raise MarkerError(f"{where}: {exc}") from None
        elif what == "run" or what.startswith("run, exit "):
            exit_code = int(what[len("run, exit ") :]) if what != "run" else 0
            output = _next_fence(text, fence.end, blocks)
            shown, span = None, (0, 0)
            if output is not None and output.language in OUTPUT_LANGUAGES:
                shown, end = output.code, output.end
                span = _inside(text, output)
            step = Step("run", line, fence.code, exit_code=exit_code, output=shown, span=span)
        else:
            raise MarkerError(f"{where}: unknown marker `<!-- test: {what} -->`")
        yield Region(directive.start, end, parsed=step, evaluator=evaluate)


def steps(page: Path) -> list[Step]:
    """The marked steps of a page, in order; a marker not followed by its block raises."""
    return [example.parsed for example in SYBIL.parse(page)]


SYBIL = Sybil(parsers=[parse_steps], patterns=["*.md"], path=str(DOCS))


def pages() -> list[Path]:
    """Every page with at least one step that runs (a page whose markers are wrong is
    left to `test_every_marker_is_followed_by_its_block`)."""

    def runs(page: Path) -> bool:
        try:
            return any(s.kind != "not run" for s in steps(page))
        except MarkerError:
            return False

    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts and runs(p))


def unchecked(page: Path) -> list[tuple[int, str]]:
    """The blocks of commands or output a page shows that no step runs or compares, and
    that no `not run: WHY` marks: (line, first line)."""
    document = SYBIL.parse(page)
    covered = [(e.region.start, e.region.end) for e in document]
    found = []
    for fence in fences(document):
        if fence.language not in SHOWN_LANGUAGES:
            continue
        if any(start <= fence.start < end for start, end in covered):
            continue
        line = document.text.count("\n", 0, fence.start) + 1
        found.append((line, (fence.code.splitlines() or [""])[0]))
    return found


# ---- comparing an output -------------------------------------------------------------------

_WHOLE_TIME, _FRACTION_TIME = "2026-12-02T03:11:39Z", "2026-12-02T03:11:39.101970Z"
_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")
_RUN_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b")
_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_DURATION = re.compile(r"\bin \d+(?:\.\d+)? (s|ms|min|h)\b")
_ARCHIVED = re.compile(r"\b[1-9][\d.,]* (?:bytes|KB|MB|GB)(?= (?:to archive|archived))")
# the date in a date-suffixed heartbeat id (`Name_2026-12-05_3f63af83`): the day before
# its heartbeat, which the incident's seeding counts back from now
_HEARTBEAT_DATE = re.compile(r"(?<=_)\d{4}-\d\d-\d\d(?=_[0-9a-f]{8}\b)")
_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]):\d{2,5}\b")


def normalise(text: str, home: str = "", host: str = "") -> str:
    """What changes from run to run, made the same: run ids, sha256 digests (a plan's),
    RFC 3339 times, the dates in date-suffixed heartbeat ids, how long a run
    took (`in 0.6 s`), the emulator's port and pid, the host name (`@laptop`), the home directory
    (`~`); trailing blanks."""
    if home:
        text = text.replace(home, "~")
    if host:
        text = re.sub(rf"@{re.escape(host)}\b", "@laptop", text)
    text = _RUN_ID.sub("20261202T031139Z-368d67", text)
    text = re.sub(r"\b\d{8}T\d{6}Z\b(?!-)", "20261202T031139Z", text)  # a run id cut short
    text = _SHA256.sub("7dbaf45be47c61671116f06e52050bc3877f9d212772875d4074702a0f43b24e", text)
    text = _TIME.sub(lambda m: _FRACTION_TIME if "." in m.group() else _WHOLE_TIME, text)
    text = _HEARTBEAT_DATE.sub("2026-12-01", text)
    text = _PORT.sub(r"\1:8080", text)
    text = _DURATION.sub(r"in 0.6 \1", text)
    text = re.sub(r"\bpid \d+", "pid 24583", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _pattern(expected: str) -> re.Pattern[str]:
    parts = []
    for line in expected.splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts), re.DOTALL)


def matches(expected: str, actual: str) -> bool:
    """`actual` is what `expected` shows, `...` standing for what a page leaves out; a
    normalised time with or without its fraction of a second is the same time (whether a
    time has one varies from run to run), and so is any size of what is archived other
    than 0 (before-images hold timestamps, whose bytes vary)."""
    expected, actual = (
        _ARCHIVED.sub("SIZE", t.replace(_FRACTION_TIME, _WHOLE_TIME)) for t in (expected, actual)
    )
    return _pattern(expected + "\n").fullmatch(actual + "\n") is not None


# ---- the shell a page's steps run in --------------------------------------------------------


@dataclass
class Shell:
    """A reader's terminal: one bash process that runs the steps in turn, so what a step
    exports, assigns, starts in the background (`&`, then `wait`) or the directory it
    moves to, the next one sees. A step stops at its first failing command, as under
    `set -e`, without ending the shell. Use it as a context manager: leaving it ends the
    shell and whatever it left running."""

    cwd: Path
    env: dict[str, str]
    emulator_host: Optional[str] = None  # the test's emulator, for `test: emulator` steps
    transcript: list[str] = field(default_factory=list)
    drifted: bool = False  # with FSMIGRATE_DOCS_UPDATE: the step just compared differs
    where: Optional[Path] = None  # the directory the last step ended in
    _proc: Optional[subprocess.Popen[str]] = None
    _steps: int = 0

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shell(self) -> subprocess.Popen[str]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["bash", "--norc", "--noprofile"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its background jobs end with it (close)
            )
        return self._proc

    def run(self, code: str, *, strict: bool = True, timeout: float = 300) -> tuple[int, str]:
        proc = self._shell()
        assert proc.stdin is not None and proc.stdout is not None
        self._steps += 1
        out = self.cwd.parent / f".{self.cwd.name}.step{self._steps}"
        proc.stdin.write(
            f"__docs_step() {{\n{_STRICT if strict else ''}{code}\n}}\n"
            f"__docs_step > {_q(out)} 2>&1 < /dev/null; __docs_rc=$?; set +e; trap - ERR\n"
            f'printf \'\\n{_DONE} %s %s\\n\' "$__docs_rc" "$PWD"\n'
        )
        proc.stdin.flush()
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the shell ended (timeout {timeout} s?) in:\n{code}")
                if line.startswith(_DONE):
                    rc, where = line[len(_DONE) :].strip().split(" ", 1)
                    break
        finally:
            timer.cancel()
        self.where = Path(where)
        printed = out.read_text() if out.exists() else ""
        self.transcript.append(f"$ {code}\n{printed}(exit {rc})\n")
        return int(rc), printed

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)  # the shell and its jobs
            except ProcessLookupError:
                pass
            self._proc.wait(30)
        self._proc = None

    def _dir(self) -> Path:
        return self.where or self.cwd

    def normalise(self, text: str) -> str:
        return normalise(text, home=self.env.get("HOME", ""), host=socket.gethostname())


_DONE = "__DOCS_STEP_DONE__"
# set -e for one step, without ending the shell: the first failing command returns from
# the step (unless the page said `set +e`), and -e is off again when the step ends
_STRICT = (
    "set -e; trap '__docs_rc=$?; if [[ $- == *e* ]]; then set +e; return $__docs_rc; fi' ERR\n"
)


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


UPDATE = "FSMIGRATE_DOCS_UPDATE"  # set: a drifted sample is rewritten, not failed


def _compare(shell: Shell, step: Step, command: str, expected: str, actual: str) -> Optional[str]:
    got = shell.normalise(actual)
    if matches(normalise(expected), got):
        return None
    if os.environ.get(UPDATE):
        shell.drifted = True
        return None
    return (
        f"line {step.line}: the output of `{command.splitlines()[0]}` is not what the page "
        f"shows\n--- the page shows\n{expected}\n--- the command printed (normalised)\n{got}"
    )


def evaluate(example: Example) -> Optional[str]:
    """Sybil's evaluator: run one step in the page's shell; a message when it fails."""
    step: Step = example.parsed
    shell: Shell = example.namespace["shell"]
    if step.kind == "not run":
        return None
    if step.kind == "file":
        target = shell._dir() / step.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.code + "\n")
        return None
    if step.kind == "python":
        code = f"{_q(Path(sys.executable))} - <<'DOCS_EXAMPLE_EOF'\n{step.code}\nDOCS_EXAMPLE_EOF"
        rc, out = shell.run(code)
        return None if rc == 0 else f"line {step.line}: the Python block exited {rc}\n{out}"
    if step.kind == "emulator" and shell.emulator_host:
        rc, out = shell.run(f"export FIRESTORE_EMULATOR_HOST={shell.emulator_host}")
        return None if rc == 0 else out
    if step.kind == "console":
        shown = []
        for command, expected in step.commands:
            _, out = shell.run(command, strict=False)
            shell.drifted = False
            problem = _compare(shell, step, command, expected, out)
            if problem:
                return problem
            got = shell.normalise(out) if shell.drifted else expected
            shown.append(f"$ {command}" + (f"\n{got}" if got else ""))
        if os.environ.get(UPDATE):
            _update(example, step.span, "\n".join(shown) + "\n")
        return None
    rc, out = shell.run(step.code)  # run, or the emulator for a page that starts its own
    if rc != step.exit_code:
        return (
            f"line {step.line}: exit {rc}, the page expects {step.exit_code}\n"
            f"--- the step\n{step.code}\n--- it printed\n{out}"
        )
    if step.output is not None:
        shell.drifted = False
        problem = _compare(shell, step, step.code, step.output, out)
        if shell.drifted:
            _update(example, step.span, shell.normalise(out) + "\n")
        return problem
    return None


def _update(example: Example, span: tuple[int, int], text: str) -> None:
    """With FSMIGRATE_DOCS_UPDATE: what the page will show there instead (`run_page`
    writes the page when every step has run)."""
    example.namespace.setdefault("updates", []).append((span, text))


def run_page(page: Path, shell: Shell) -> None:
    """Every step of a page, in order, in `shell`; the first that fails raises (Sybil's
    SybilFailure, an AssertionError, naming the line and the difference)."""
    document = SYBIL.parse(page)
    document.namespace["shell"] = shell
    for example in document:
        example.evaluate()
    updates = document.namespace.get("updates", [])
    if updates:  # FSMIGRATE_DOCS_UPDATE: the samples that drifted, as the tool prints them
        text = document.text
        for (start, end), new in sorted(updates, reverse=True):
            text = text[:start] + new + text[end:]
        page.write_text(text)


def environment(home: Path, extra: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """A reader's environment: this Python's scripts first on PATH, HOME in the test, the
    operator named, output unbuffered (stdout and stderr in the order a terminal shows)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FSMIGRATE_", "FIRESTORE_", "GOOGLE_CLOUD_PROJECT", "PYTEST_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env["FSMIGRATE_OPERATOR"] = "you"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "100"
    env.update(extra)
    return env
