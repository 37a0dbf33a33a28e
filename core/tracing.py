"""OpenTelemetry traces of every call, from the producer to the worker and back.

Off unless the standard variables ask for it (`OTEL_TRACES_EXPORTER=otlp` or `console`,
`OTEL_SDK_DISABLED` not true) or `CELERY_TASKS_TRACES_FILE` names a file (one JSON span
per line); an application that set up the OpenTelemetry SDK itself gets the spans in its
own pipeline. Off, a call pays one test of a module global: nothing is imported, no trace
header is added.

On, every call carries W3C trace context (`traceparent`) in its message headers, whatever
its path: the single-call path and the batch path (`send {task}` and `send batch {task}`
spans, here), and `delay()`/`apply_async` and workflows, which go through Celery's publish
and its OpenTelemetry instrumentation (`opentelemetry-instrumentation-celery`). The worker
continues the trace: that instrumentation's `run/{task}` span, and this project's `queue
{task}` (from publish to the worker's start), `reply {task}` and `dead-letter {task}`
spans (celery_tasks.worker.observe). Spans carry the task name, task id, contract
fingerprint, pinned celery_tasks commit, retries and the outcome.

Needs the `tracing` extra (`pip install 'celery-tasks[tracing]'`); asking for traces
without it is a ConfigError (exit 7) naming it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from celery import signals

from .errors import ConfigError, outcome_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from .settings import Settings

__all__ = ["ATTRIBUTE", "carrier_context", "sending", "set_outcome", "traced_replies", "tracer",
           "workflow"]

#: Span attribute names: OpenTelemetry's where one exists, else this project's.
ATTRIBUTE = {
    "task": "celery.task_name",  # as opentelemetry-instrumentation-celery names it
    "id": "messaging.message.id",
    "system": "messaging.system",
    "destination": "messaging.destination.name",
    "fingerprint": "celery_tasks.contract.fingerprint",
    "commit": "celery_tasks.commit",
    "sender_fingerprint": "celery_tasks.sender.fingerprint",
    "sender_commit": "celery_tasks.sender.commit",
    "retries": "celery_tasks.retries",
    "outcome": "celery_tasks.outcome",
    "dead_lettered": "celery_tasks.dead_lettered",
    "reason": "celery_tasks.reason",
    "batch_size": "messaging.batch.message_count",
}
INSTRUMENTATION = "celery_tasks"
#: The extra that brings the OpenTelemetry packages.
EXTRA = "pip install 'celery-tasks[tracing]'"

_lock = threading.Lock()
_resolved = False
_tracer: Tracer | None = None


def tracer() -> Tracer | None:
    """This process's tracer, or None when tracing is off (decided once per process)."""
    if _resolved:
        return _tracer
    return _resolve(None)


def configure(settings: Settings, service: str) -> Tracer | None:
    """Decide now (a CLI or a worker starting): set up the SDK if the settings ask for it,
    naming the process `service` unless OTEL_SERVICE_NAME does. A missing extra is a
    ConfigError here, before anything is sent."""
    return _resolve((settings, service))


def _resolve(given: tuple[Settings, str] | None) -> Tracer | None:
    global _resolved, _tracer
    with _lock:
        if not _resolved:
            if given is None:
                from ..rabbitmq_config import SETTINGS  # the settings, read once

                given = (SETTINGS, "celery_tasks")
            _tracer = _set_up(*given)
            _resolved = True
        return _tracer


def _set_up(settings: Settings, service: str) -> Tracer | None:
    application = _application_tracer()  # (run under opentelemetry-instrument, say)
    if application is not None or not settings.traces_exporters:
        return application
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as exc:
        raise ConfigError(f"traces are asked for (OTEL_TRACES_EXPORTER or "
                          f"CELERY_TASKS_TRACES_FILE) but {exc.name} is not installed: "
                          f"{EXTRA}") from None
    from .version import pinned_commit

    resource = Resource.create({ATTRIBUTE["commit"]: pinned_commit()})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    provider = TracerProvider(resource=resource)
    for name in settings.traces_exporters:
        provider.add_span_processor(_processor(name, settings))
    trace.set_tracer_provider(provider)
    # Spans still batched when a process ends are written first: the SDK does it at exit,
    # and a worker's pool process ends without running exit handlers.
    signals.worker_process_shutdown.connect(lambda **_: provider.force_flush(), weak=False)
    return _instrumented(provider)


def _instrumented(provider: Any) -> Tracer:
    """`provider`'s tracer, with Celery's publish and the worker's run span traced too
    (unless the application instrumented Celery itself)."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError as exc:
        raise ConfigError(f"traces are on but {exc.name} is not installed: {EXTRA}") from None
    if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
        CeleryInstrumentor().instrument(tracer_provider=provider)
    return provider.get_tracer(INSTRUMENTATION)


def _processor(name: str, settings: Settings) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("OTEL_TRACES_EXPORTER=otlp needs "
                              "opentelemetry-exporter-otlp-proto-http: " + EXTRA) from None
        return BatchSpanProcessor(OTLPSpanExporter())
    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    # A file: one JSON object per line, each line one append (every process of a host may
    # share it: lines never interleave).
    try:
        fd = os.open(settings.traces_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"CELERY_TASKS_TRACES_FILE names {settings.traces_file}, which "
                          f"cannot be written: {exc.strerror or exc}") from None
    return BatchSpanProcessor(_json_lines(fd))


def _json_lines(fd: int) -> Any:
    """A span exporter that appends each span to a file as one line of JSON, in one write
    (the SDK's console exporter writes a batch through a buffer, which splits long ones)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLines(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            for span in spans:
                os.write(fd, (span.to_json(indent=None) + "\n").encode())
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with contextlib.suppress(OSError):
                os.close(fd)

    return JsonLines()


def _application_tracer() -> Tracer | None:
    """The application's own SDK tracer provider, if it set one up (a web app); else None.
    Only looked for if the application imported the SDK: off, nothing is imported."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None
    return _instrumented(provider)


class Sending:
    """A send under way: the headers that carry its trace, and its span."""

    def __init__(self, span: Span, headers: dict[str, str]) -> None:
        self.span, self.headers = span, headers

    def sent(self, task_id: str, status: str, value: Any) -> None:
        """Name the call's task id and its outcome (its status, and its error if any)."""
        self.span.set_attribute(ATTRIBUTE["id"], task_id)
        if status == "SUCCESS":
            set_outcome(self.span, "success")
        elif isinstance(value, BaseException):
            set_outcome(self.span, outcome_of(value))
        else:
            set_outcome(self.span, status.lower())


@contextlib.contextmanager
def sending(active: Tracer, task: Any, *, batch: bool = False) -> Iterator[Sending]:
    """A PRODUCER span around sending `task` (one call, or a batch of them), and the trace
    context its messages carry."""
    from opentelemetry import propagate, trace

    from .contract import contract_headers

    contract = contract_headers(type(task))
    attributes = {ATTRIBUTE["task"]: task.name, ATTRIBUTE["system"]: "rabbitmq",
                  ATTRIBUTE["destination"]: task.name,
                  ATTRIBUTE["fingerprint"]: contract["contract_fingerprint"],
                  ATTRIBUTE["commit"]: contract["contract_commit"]}
    name = f"send batch {task.name}" if batch else f"send {task.name}"
    with active.start_as_current_span(name, kind=trace.SpanKind.PRODUCER,
                                      attributes=attributes) as span:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield Sending(span, headers)


@contextlib.contextmanager
def workflow(name: str) -> Iterator[None]:
    """A span around a workflow's sends (a group or chord of several contracts), so that
    they make one trace; nothing when tracing is off."""
    active = tracer()
    if active is None:
        yield
        return
    from opentelemetry import trace

    with active.start_as_current_span(name, kind=trace.SpanKind.PRODUCER):
        yield


def set_outcome(span: Span, outcome: str) -> None:
    """The outcome attribute; an error status for anything but success."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(ATTRIBUTE["outcome"], outcome)
    if outcome != "success":
        span.set_status(Status(StatusCode.ERROR, outcome))


def carrier_context(headers: Mapping[str, Any]) -> Any:
    """The trace context a message's headers carry (None if they carry none)."""
    from opentelemetry import propagate

    text = {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")
            and isinstance(v, str)}
    return propagate.extract(text) if text else None


def traced_replies(backend: Any) -> Any:
    """`backend`, whose results go back inside a `reply {task}` span when tracing is on."""
    active = tracer()
    if active is None:
        return backend
    store = backend.store_result

    def store_result(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry import trace

        request = kwargs.get("request")
        name = str(getattr(request, "task", None) or getattr(request, "name", None) or "task")
        # Inside the run, under its span; from the worker's main process (a hard time
        # limit, a lost pool process, a revoke, a message it cannot run), under the
        # context the message carried.
        context = None
        if not trace.get_current_span().get_span_context().is_valid:
            context = carrier_context(request if isinstance(request, Mapping)
                                      else getattr(request, "__dict__", {}))
        with active.start_as_current_span(f"reply {name}", context=context, attributes={
                ATTRIBUTE["id"]: task_id, ATTRIBUTE["task"]: name, "celery.state": state}):
            return store(task_id, result, state, *args, **kwargs)

    backend.store_result = store_result
    return backend
