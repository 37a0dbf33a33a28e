"""Sending tasks and collecting their outcomes: one call, or a batch pipelined on one connection."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from celery_tasks.core.contract import check_call, payload_limit
from celery_tasks.core.errors import REMOTE_ERRORS, BrokerUnreachable, TaskFailed, TaskTimeout
from celery_tasks.core.results import wait_for
from celery_tasks.publisher.connection import supports_batch_path
from celery_tasks.publisher.single import call, supports_single_call_path
from celery_tasks.publisher.stream import collect_results, send_batch, send_stream

Call = tuple[Sequence[Any], Mapping[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its result, or the type and text of the error it raised."""

    task_id: str
    ok: bool
    result: Any = None
    error_type: str = ""
    error_message: str = ""

    @classmethod
    def from_state(cls, task_id: str, status: str, value: Any) -> Outcome:
        if status == "SUCCESS":
            return cls(task_id, True, result=value)
        if isinstance(value, BaseException):
            return cls(task_id, False, error_type=type(value).__name__, error_message=str(value))
        return cls(task_id, False, error_type=status, error_message=str(value))

    def unwrap(self, task_name: str) -> Any:
        """The result, or the error naming the task, the error's type and message.

        Errors the worker raises about the contract itself keep their own exit codes.
        """
        if not self.ok:
            error = REMOTE_ERRORS.get(self.error_type, TaskFailed)
            raise error(
                f"task {task_name}[{self.task_id}] raised {self.error_type}: {self.error_message}"
            )
        return self.result

    def as_json(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.task_id, "status": "SUCCESS", "result": self.result}
        return {
            "id": self.task_id,
            "status": "FAILURE",
            "error": {"type": self.error_type, "message": self.error_message},
        }


#: Failed outcomes a report prints (and a `--count` report keeps).
MAX_FAILURES_KEPT = 20


@dataclass
class BatchReport:
    """The outcomes of a batch, in the order the calls were given, and its timing."""

    task_name: str
    task_ids: list[str] = field(default_factory=list)
    outcomes: list[Outcome | None] = field(default_factory=list)
    elapsed: float = 0.0
    #: Calls RabbitMQ never confirmed (the batch path, at its deadline): maybe not queued.
    unconfirmed_ids: list[str] = field(default_factory=list)

    @property
    def pending_ids(self) -> list[str]:
        return [self.task_ids[i] for i, o in enumerate(self.outcomes) if o is None]

    def summary(self) -> CountReport:
        """Counts, rate and `--json` form, as `--count` reports them."""
        report = CountReport(self.task_name, len(self.outcomes), pending_ids=self.pending_ids,
                             unconfirmed_ids=self.unconfirmed_ids, elapsed=self.elapsed)
        for outcome in self.outcomes:
            if outcome is not None:
                report.add(outcome)
        return report


@dataclass
class CountReport:
    """`--count N` of one call: counts, the first failures and what is still pending.

    Unlike `BatchReport` it keeps no outcome per call, so a producer sending a million
    tasks stays as small as one sending a hundred.
    """

    task_name: str
    count: int
    succeeded: int = 0
    failed: int = 0
    failures: list[Outcome] = field(default_factory=list)  # the first MAX_FAILURES_KEPT
    pending_ids: list[str] = field(default_factory=list)
    unconfirmed_ids: list[str] = field(default_factory=list)
    unsent: int = 0  # calls never published: the deadline came first
    elapsed: float = 0.0
    #: Calls published again (unconfirmed when a connection was lost, refused, returned)
    #: and the connections lost on the way: at-least-once at work.
    republished: int = 0
    connections_lost: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.succeeded += 1
            return
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(outcome)

    @property
    def rate(self) -> float:
        done = self.succeeded + self.failed
        return done / self.elapsed if self.elapsed > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task_name,
            "count": self.count,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": len(self.pending_ids),
            "pending_ids": self.pending_ids,
            "unconfirmed_ids": self.unconfirmed_ids,
            "unsent": self.unsent,
            "republished": self.republished,
            "connections_lost": self.connections_lost,
            "elapsed_s": round(self.elapsed, 4),
            "tasks_per_s": round(self.rate, 2),
            "errors": [o.as_json() for o in self.failures],
        }


def send_count(task: Any, call: Call, count: int, timeout: float | None,
               on_outcome: Callable[[Outcome], None] | None = None) -> CountReport:
    """Send one checked call `count` times and count the outcomes as they arrive.

    With RabbitMQ and `rpc://` (send_stream) memory stays flat whatever `count`; with a
    durable result backend every task id is kept to read its result.
    """
    if not supports_batch_path(task.app):  # the embedded broker: Celery's own path
        return send_many(task, [call] * count, timeout, on_outcome).summary()
    report = CountReport(task.name, count)

    def settled(outcome: Outcome) -> None:
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        stream = send_stream(
            task, itertools.repeat(call, count), timeout,
            lambda _, task_id, status, value: settled(Outcome.from_state(task_id, status, value)),
            checked=True, buffered=True)
    except OperationalError as exc:
        raise _broker_lost(exc) from None
    report.pending_ids, report.unconfirmed_ids = stream.pending_ids, stream.unconfirmed_ids
    report.unsent, report.elapsed = count - stream.sent, stream.elapsed
    report.republished = stream.republished
    report.connections_lost = stream.connections_lost
    return report


def publish_count(task: Any, call: Call, count: int,
                  timeout: float | None) -> tuple[list[str], int]:
    """Publish one checked call `count` times without waiting for results.

    Returns the ids RabbitMQ confirmed (batched confirms) and how many calls it did not
    confirm within `timeout` (those may not be queued). Elsewhere, Celery's own publish.
    """
    if not supports_batch_path(task.app):
        with task.app.producer_or_acquire() as producer:
            return [task.apply_async(*call, producer=producer).id for _ in range(count)], 0
    try:
        stream = send_stream(task, itertools.repeat(call, count), timeout,
                             lambda *_: None, checked=True, wait=False, buffered=True)
    except OperationalError as exc:
        raise _broker_lost(exc) from None
    unconfirmed = set(stream.unconfirmed_ids)
    confirmed = [task_id for task_id in stream.pending_ids if task_id not in unconfirmed]
    return confirmed, count - len(confirmed)


def _broker_lost(exc: Exception) -> BrokerUnreachable:
    return BrokerUnreachable(f"lost the connection to the broker: {exc}")


def send(
    task: Any, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: float | None
) -> Outcome:
    """Send one call and wait up to `timeout` seconds (None: forever) for its outcome.

    On RabbitMQ with `rpc://` this is the single-call path (celery_tasks.publisher.single);
    elsewhere (the embedded broker, a durable result backend) Celery's own.
    """
    if supports_single_call_path(task.app):
        try:
            return Outcome.from_state(*call(task, args, kwargs, timeout))
        except OperationalError as exc:
            raise _broker_lost(exc) from None
    try:
        result: AsyncResult = task.apply_async(args, kwargs)
        value = wait_for(result, timeout, 0.05)
        return Outcome.from_state(result.id, result.state, value)
    except CeleryTimeoutError:
        raise TaskTimeout(
            f"no result for {task.name}[{result.id}] within {timeout:g} s: is a worker running "
            f"for {task.name}? The task stays queued and may still run"
        ) from None
    except OperationalError as exc:
        raise _broker_lost(exc) from None


def send_many(
    task: Any,
    calls: Iterable[Call],
    timeout: float | None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> BatchReport:
    """Publish every call, then collect outcomes as they arrive.

    Every call is checked against the contract before the first is published, so a bad
    call sends nothing. On RabbitMQ this is the batch path (celery_tasks.publisher.stream: batched
    publisher confirms, one reply queue); elsewhere (the embedded broker) Celery's own.
    At the deadline, outcomes still missing stay `None` in the report (`pending_ids`):
    those tasks are queued and may still run.
    """
    calls = list(calls)
    if supports_batch_path(task.app):
        return _send_batch(task, calls, timeout, on_outcome)
    limit = payload_limit(task.app)
    checked = [check_call(task.contract, args, kwargs, limit=limit) for args, kwargs in calls]
    report = BatchReport(task.name)
    start = time.perf_counter()
    try:
        with task.app.producer_or_acquire() as producer:
            results = [task.apply_async(a, k, producer=producer) for a, k in checked]
        report.task_ids = [r.id for r in results]
        report.outcomes = [None] * len(results)
        index = {r.id: i for i, r in enumerate(results)}
        try:
            for task_id, status, value in collect_results(results, timeout):
                outcome = Outcome.from_state(task_id, status, value)
                report.outcomes[index[task_id]] = outcome
                if on_outcome is not None:
                    on_outcome(outcome)
        except CeleryTimeoutError:
            pass
    except OperationalError as exc:
        raise _broker_lost(exc) from None
    finally:
        report.elapsed = time.perf_counter() - start
    return report


def _send_batch(task: Any, calls: list[Call], timeout: float | None,
                on_outcome: Callable[[Outcome], None] | None) -> BatchReport:
    def settled(task_id: str, status: str, value: Any) -> None:
        if on_outcome is not None:
            on_outcome(Outcome.from_state(task_id, status, value))

    try:
        batch = send_batch(task, calls, timeout, settled)
    except OperationalError as exc:
        raise _broker_lost(exc) from None
    outcomes: list[Outcome | None] = [
        None if o is None else Outcome.from_state(task_id, *o)
        for task_id, o in zip(batch.task_ids, batch.outcomes, strict=True)
    ]
    return BatchReport(task.name, batch.task_ids, outcomes, batch.elapsed, batch.unconfirmed_ids)
