"""`--metrics`: a batch's Prometheus metrics, printed or pushed to a Pushgateway.

The producer of a batch is a short-lived process that no Prometheus can scrape: it prints
the metrics in Prometheus' text format (`--metrics -`) or pushes them (`--metrics URL`,
job `celery_tasks_producer`, grouped by task), as the workers' own are named:

    celery_tasks_producer_tasks_total{task, fingerprint, outcome}   success, failure,
        contract_mismatch, contract_violation, timeout, pending, unsent
    celery_tasks_producer_batch_seconds{task}    from the first check to the last outcome
    celery_tasks_producer_republished_total{task}
    celery_tasks_producer_connections_lost_total{task}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery_tasks.core.contract import contract_headers
from celery_tasks.core.errors import ConfigError, outcome_of

from .client import CountReport, Outcome

__all__ = ["JOB", "BatchMetrics", "check_destination"]

JOB = "celery_tasks_producer"
EXTRA = "pip install 'celery-tasks[metrics]'"


def check_destination(text: str) -> str:
    """`-` or an http(s):// URL of a Pushgateway; anything else is a usage error."""
    if text == "-":
        return text
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"must be - (print) or a Pushgateway's http(s):// URL, got {text!r}")
    return text


def require() -> None:
    """prometheus-client is installed (else a ConfigError naming the extra)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(f"--metrics needs prometheus-client: {EXTRA}") from None


class BatchMetrics:
    """The metrics of one batch of `task`, counted as its outcomes arrive."""

    def __init__(self, task: Any) -> None:
        require()
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.task = task.name
        self.fingerprint = contract_headers(type(task))["contract_fingerprint"]
        self.tasks = Counter("celery_tasks_producer_tasks", "Calls of the batch, by outcome",
                             ["task", "fingerprint", "outcome"], registry=self.registry)
        self.seconds = Gauge("celery_tasks_producer_batch_seconds",
                             "From the first check to the last outcome", ["task"],
                             registry=self.registry)
        self.republished = Counter("celery_tasks_producer_republished",
                                   "Calls published again (at-least-once)", ["task"],
                                   registry=self.registry)
        self.lost = Counter("celery_tasks_producer_connections_lost",
                            "Connections lost during the batch", ["task"],
                            registry=self.registry)

    def add(self, outcome: Outcome) -> None:
        name = "success" if outcome.ok else outcome_of(outcome.error_type)  # as workers do
        self.tasks.labels(self.task, self.fingerprint, name).inc()

    def finish(self, report: CountReport) -> None:
        for name, count in (("pending", len(report.pending_ids)), ("unsent", report.unsent)):
            if count:
                self.tasks.labels(self.task, self.fingerprint, name).inc(count)
        self.seconds.labels(self.task).set(report.elapsed)
        self.republished.labels(self.task).inc(report.republished)
        self.lost.labels(self.task).inc(report.connections_lost)

    def emit(self, destination: str) -> None:
        """Print the metrics (`-`) or push them to the Pushgateway at `destination`."""
        from prometheus_client import generate_latest, push_to_gateway

        if destination == "-":
            print(generate_latest(self.registry).decode(), end="")
            return
        try:
            push_to_gateway(destination, job=JOB, grouping_key={"task": self.task},
                            registry=self.registry, timeout=10)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot push the metrics to {destination}: "
                              f"{getattr(exc, 'reason', None) or exc}") from None
