"""What a worker tells about its tasks: Prometheus metrics, and the worker's part of traces.

Metrics (CELERY_TASKS_METRICS_PORT; off unless set; `pip install 'celery-tasks[metrics]'`)
are served by the worker's main process, on CELERY_TASKS_METRICS_ADDRESS (127.0.0.1 unless
told), at `/metrics`. They are counted where Celery settles each message, in that process
(`ContractRequest`, `ContractConsumer`), so a prefork pool needs no shared files:

    celery_tasks_tasks_total{task, fingerprint, outcome}     success, failure, retry,
                                                              contract_mismatch,
                                                              contract_violation, timeout,
                                                              worker_lost, revoked,
                                                              rejected, interrupted
    celery_tasks_task_run_seconds{task}                      histogram
    celery_tasks_queue_wait_seconds{task}                    histogram: publish to start
    celery_tasks_contract_mismatches_total{task, fingerprint, sender_fingerprint,
                                           sender_commit}
    celery_tasks_contract_violations_total{task}
    celery_tasks_dead_lettered_total{task, reason}
    celery_tasks_in_flight{task}, celery_tasks_prefetched{task}   running; received, waiting
    celery_tasks_worker_info{task, fingerprint, commit, hostname}  1

The queue wait runs from the producer's `published_at` header (else from RabbitMQ's
arrival stamp, `timestamp_in_ms`, on a broker that sets it) to the pool's start: first
deliveries only (a retry or a delayed call waits on purpose; a message RabbitMQ delivers
again waited for an earlier attempt too), and as exact as the two hosts' clocks agree.

Traces (core/tracing.py): opentelemetry-instrumentation-celery's `run/{task}` span gets
the contract's fingerprint, the pinned commit, the sender's, the retries and the outcome;
beside it a `queue {task}` span from publish to start, and under it `reply {task}`, the
result on its way back; a message rejected into the dead-letter queue gets a `dead-letter
{task}` span. All continue the producer's trace.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celery import signals

from ..core import tracing
from ..core.contract import PUBLISHED_AT, contract_headers, is_contract_class
from ..core.errors import ConfigError, outcome_of
from ..core.version import pinned_commit

if TYPE_CHECKING:
    from ..core.settings import Settings

__all__ = ["METRICS_EXTRA", "WorkerMetrics", "check", "metrics", "start"]

METRICS_EXTRA = "pip install 'celery-tasks[metrics]'"
#: Seconds: from a millisecond call to the longest time limit allowed.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0, 1800.0)

_metrics: WorkerMetrics | None = None


def metrics() -> WorkerMetrics | None:
    """This worker's metrics, or None when they are off."""
    return _metrics


#: The header RabbitMQ (3.12 and later) adds to every message as it arrives, in ms since the
#: epoch, when rabbitmq.conf sets message_interceptors.incoming.set_header_timestamp (the
#: compose brokers do: docker/rabbitmq/celery-tasks.conf).
ARRIVED_MS = "timestamp_in_ms"


def sent_at(headers: Mapping[str, Any]) -> float | None:
    """When a call was sent, in s since the epoch: its `published_at` (every call sent
    through celery_tasks), else the broker's arrival stamp (a plain Celery caller, another
    language's), else None: its queue wait is unknown."""
    for key, scale in ((PUBLISHED_AT, 1.0), (ARRIVED_MS, 1e-3)):
        value = headers.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value * scale
    return None


class WorkerMetrics:
    """The metrics of one worker (one task), in a registry of its own."""

    def __init__(self, task: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = registry = CollectorRegistry()
        self.task = task.name
        self.fingerprint = contract_headers(type(task))["contract_fingerprint"]
        self.tasks = Counter("celery_tasks_tasks", "Tasks settled, by outcome",
                             ["task", "fingerprint", "outcome"], registry=registry)
        self.run_seconds = Histogram("celery_tasks_task_run_seconds", "Task run time",
                                     ["task"], buckets=BUCKETS, registry=registry)
        self.queue_wait = Histogram("celery_tasks_queue_wait_seconds",
                                    "From publish to the start of the run (first deliveries)",
                                    ["task"], buckets=BUCKETS, registry=registry)
        self.mismatches = Counter(
            "celery_tasks_contract_mismatches", "Calls refused: the sender's contract differs",
            ["task", "fingerprint", "sender_fingerprint", "sender_commit"], registry=registry)
        self.violations = Counter("celery_tasks_contract_violations",
                                  "Calls or results refused by the contract's types",
                                  ["task"], registry=registry)
        self.dead_lettered = Counter("celery_tasks_dead_lettered",
                                     "Messages rejected into the dead-letter queue",
                                     ["task", "reason"], registry=registry)
        from celery.worker import state

        Gauge("celery_tasks_in_flight", "Tasks running", ["task"], registry=registry).labels(
            self.task).set_function(lambda: len(state.active_requests))
        Gauge("celery_tasks_prefetched", "Tasks received and waiting for a pool slot",
              ["task"], registry=registry).labels(self.task).set_function(
            lambda: max(0, len(state.reserved_requests) - len(state.active_requests)))
        Info("celery_tasks_worker", "This worker's contract and celery_tasks commit",
             registry=registry).info({"task": self.task, "fingerprint": self.fingerprint,
                                      "commit": pinned_commit(),
                                      "hostname": socket.gethostname()})
        for outcome in ("success", "failure"):  # present (0) before the first task
            self.tasks.labels(self.task, self.fingerprint, outcome)

    def settled(self, outcome: str, headers: Mapping[str, Any],
                runtime: float | None = None) -> None:
        self.tasks.labels(self.task, self.fingerprint, outcome).inc()
        if runtime is not None:
            self.run_seconds.labels(self.task).observe(runtime)
        if outcome == "contract_mismatch":
            self.mismatches.labels(self.task, self.fingerprint,
                                   str(headers.get("contract_fingerprint", "unknown")),
                                   str(headers.get("contract_commit", "unknown"))).inc()
        elif outcome == "contract_violation":
            self.violations.labels(self.task).inc()

    def started(self, headers: Mapping[str, Any], time_start: float) -> None:
        sent = sent_at(headers)
        redelivered = (headers.get("delivery_info") or {}).get("redelivered")
        if sent is not None and not (headers.get("eta") or headers.get("retries")
                                     or redelivered):
            self.queue_wait.labels(self.task).observe(max(0.0, time_start - sent))

    def rejected(self, reason: str) -> None:
        self.dead_lettered.labels(self.task, reason).inc()

    def serve(self, settings: Settings) -> None:
        from prometheus_client import start_http_server

        try:
            start_http_server(settings.metrics_port, settings.metrics_address,
                              registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port} "
                f"(CELERY_TASKS_METRICS_PORT, CELERY_TASKS_METRICS_ADDRESS): "
                f"{exc.strerror or exc}") from None


def dead_lettered(task: str, task_id: str | None, headers: Mapping[str, Any],
                  reason: str) -> None:
    """Count and trace a message rejected into the dead-letter queue."""
    if _metrics is not None:
        _metrics.rejected(reason)
    active = tracing.tracer()
    if active is None:
        return
    attributes: dict[str, str | bool] = {
        tracing.ATTRIBUTE["task"]: task, tracing.ATTRIBUTE["dead_lettered"]: True,
                  tracing.ATTRIBUTE["reason"]: reason}
    if task_id:
        attributes[tracing.ATTRIBUTE["id"]] = task_id
    span = active.start_span(f"dead-letter {task}", context=tracing.carrier_context(headers),
                             attributes=attributes)
    tracing.set_outcome(span, reason)
    span.end()


def check(settings: Settings, task: str) -> None:
    """Before a worker for `task` connects: the extras its settings need are installed (a
    ConfigError naming the extra otherwise), and traces are set up if asked for."""
    if settings.metrics_port:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError("CELERY_TASKS_METRICS_PORT is set but prometheus-client is not "
                              f"installed: {METRICS_EXTRA}") from None
    tracing.configure(settings, f"{task}-worker")


def start(app: Any, settings: Settings) -> None:
    """Set up metrics and traces for a worker of `app`, as the settings ask."""
    global _metrics
    tasks = [t for t in app.tasks.values() if is_contract_class(type(t))]
    if not tasks:
        return
    check(settings, tasks[0].name)
    if settings.metrics_port:
        _metrics = WorkerMetrics(tasks[0])
        _metrics.serve(settings)
    active = tracing.tracer()
    if active is not None:
        _trace_tasks(active)


def _trace_tasks(active: Any) -> None:
    """Add this project's attributes and the queue span to the instrumentation's run span
    (connected after it: its span is the current one)."""
    from opentelemetry import trace

    attr = tracing.ATTRIBUTE

    def prerun(task: Any = None, **_: Any) -> None:
        if task is None or not is_contract_class(type(task)):
            return
        request, mine = task.request, contract_headers(type(task))
        span = trace.get_current_span()
        span.set_attributes({
            attr["fingerprint"]: mine["contract_fingerprint"], attr["commit"]: pinned_commit(),
            attr["sender_fingerprint"]: str(request.get("contract_fingerprint", "unknown")),
            attr["sender_commit"]: str(request.get("contract_commit", "unknown")),
            attr["retries"]: int(request.retries or 0), attr["task"]: task.name,
            attr["id"]: str(request.id)})
        sent = sent_at(vars(request))
        if sent is not None:
            queued = active.start_span(
                f"queue {task.name}", context=tracing.carrier_context(vars(request)),
                kind=trace.SpanKind.CONSUMER, start_time=int(sent * 1e9),
                attributes={attr["task"]: task.name, attr["id"]: str(request.id),
                            attr["retries"]: int(request.retries or 0)})
            queued.end()

    def succeeded(**_: Any) -> None:
        tracing.set_outcome(trace.get_current_span(), "success")

    def failed(exception: BaseException | None = None, **_: Any) -> None:
        if exception is not None:
            tracing.set_outcome(trace.get_current_span(), outcome_of(exception))

    def retried(**_: Any) -> None:
        tracing.set_outcome(trace.get_current_span(), "retry")

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_success.connect(succeeded, weak=False)
    signals.task_failure.connect(failed, weak=False)
    signals.task_retry.connect(retried, weak=False)
