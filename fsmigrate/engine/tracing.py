"""Traces of runs (OpenTelemetry), with the `otel` extra: `pip install 'fsmigrate[otel]'`.

Spans: `fsmigrate <command>` for a command that writes (upgrade, rerun, apply, restore),
`fsmigrate.migration` for each migration's run, `fsmigrate.scan` for each scan of its
plan, `fsmigrate.commit` for each batch commit; with attributes under `fsmigrate.`
(revision, run id, mode, counts, bytes, retries, throttling). They go to whatever tracer
provider the process has: the embedding program's, or the one `opentelemetry-instrument`
configures from the OTEL_* variables for the command line. Without a provider the API's
spans are no-ops.

When opentelemetry is not installed, nothing of it is imported and a span is one
function call that yields a shared do-nothing object.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any, Optional

from fsmigrate import __version__

PREFIX = "fsmigrate."

_tracer: Any = None  # None: not looked up yet; False: opentelemetry is not installed


class Span:
    """A span being recorded: `set(name=value, ...)` adds attributes (None is left out)."""

    def __init__(self, span: Any) -> None:
        self.otel = span

    def set(self, **attributes: Any) -> None:
        for name, value in attributes.items():
            if value is not None:
                self.otel.set_attribute(PREFIX + name, _value(value))

    def error(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.otel.record_exception(exc)
        self.otel.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _NoSpan(Span):
    def __init__(self) -> None:
        self.otel = None

    def set(self, **attributes: Any) -> None:
        pass

    def error(self, exc: BaseException) -> None:
        pass


NO_SPAN: Span = _NoSpan()


def enabled() -> bool:
    """True when opentelemetry is installed (its API is then used)."""
    return bool(_get())


def _get() -> Any:
    global _tracer
    if _tracer is None:
        try:
            found = importlib.util.find_spec("opentelemetry") is not None
        except (ImportError, ValueError):  # blocked (sys.modules entry None) or broken
            found = False
        if not found:
            _tracer = False
        else:
            try:
                from opentelemetry import trace
            except ImportError:
                _tracer = False
            else:
                _tracer = trace.get_tracer("fsmigrate", __version__)
    return _tracer


@contextlib.contextmanager
def span(name: str, parent: Optional[Span] = None, **attributes: Any) -> Iterator[Span]:
    """A span around the block (a child of `parent` when given, e.g. from another
    thread; else of the current span). An exception leaving the block marks it failed."""
    tracer = _get()
    if not tracer:
        yield NO_SPAN
        return
    from opentelemetry import trace

    context = (
        trace.set_span_in_context(parent.otel)
        if parent is not None and parent.otel is not None
        else None
    )
    attrs = {PREFIX + k: _value(v) for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(
        name,
        context=context,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as otel:
        wrapped = Span(otel)
        try:
            yield wrapped
        except BaseException as exc:
            wrapped.error(exc)
            raise


def current() -> Span:
    """The current span (to parent spans started on other threads)."""
    if not _get():
        return NO_SPAN
    from opentelemetry import trace

    return Span(trace.get_current_span())


def traced(name: str, items: Iterator[Any], **attributes: Any) -> Iterator[Any]:
    """`items` passed through, in a span from the first item to the last (a scan); the
    number of items is its `fsmigrate.documents` attribute."""
    tracer = _get()
    if not tracer:
        yield from items
        return
    otel = tracer.start_span(
        name, attributes={PREFIX + k: _value(v) for k, v in attributes.items() if v is not None}
    )
    n = 0
    try:
        for item in items:
            n += 1
            yield item
    except BaseException as exc:
        Span(otel).error(exc)
        raise
    finally:
        otel.set_attribute(PREFIX + "documents", n)
        otel.end()


def _value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
