"""The batch path: many calls of one contract, with batched publisher confirms.

Celery awaits a publisher confirm for every message (celery/celery#9887) and, with
`rpc://`, redeclares its reply queue on every call. Here a batch is published on one
channel in confirm mode, with a window of unconfirmed messages that RabbitMQ acknowledges
in bulk; a message RabbitMQ refuses (nack), or that was unconfirmed when the connection
dropped, is published again (at-least-once). With `rpc://`, results come back to one
reply queue declared once per batch; it is durable and expires on its own, so a
reconnecting producer still finds its results. The messages are ordinary Celery task
messages, carrying the contract headers: any worker runs them.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet
from kombu import Consumer, Exchange, Queue

from .contract import check_call, contract_headers
from .errors import BrokerUnreachable
from .topology import declare_topology

#: Unconfirmed messages allowed in flight before the publisher waits for confirms.
WINDOW = 2000
#: Seconds to wait for RabbitMQ to acknowledge closing the batch's connection.
CLOSE_TIMEOUT = 2.0
#: How long an unused reply queue lives after its producer left (RabbitMQ x-expires).
REPLY_QUEUE_TTL_MS = 10 * 60 * 1000

Call = tuple[Sequence[Any], Mapping[str, Any]]


@dataclass
class BatchOutcome:
    """What became of each call, in order: ('SUCCESS'|'FAILURE', value) or None (pending)."""

    task_ids: list[str]
    outcomes: list[tuple[str, Any] | None]
    published_in: float = 0.0
    republished: int = 0
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: Calls RabbitMQ never confirmed by the deadline: they may not be queued at all.
    unconfirmed_ids: list[str] = field(default_factory=list)


def supports_batch_path(app: Any) -> bool:
    """The batch path needs RabbitMQ (publisher confirms); other brokers use Celery's."""
    return str(app.conf.broker_url).startswith(("amqp", "pyamqp"))


class _Publisher:
    """One channel in confirm mode; tracks which messages RabbitMQ has confirmed.

    Delivery tags grow by one per message, so confirms settle from the front of a queue:
    each message is settled once, whatever the window size.
    """

    def __init__(self, conn: Any, confirmed: set[int]) -> None:
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.pending: dict[int, int] = {}  # delivery tag -> call index
        self.order: deque[int] = deque()  # delivery tags in publish order
        self.next_tag = 1
        self.refused: list[int] = []
        self.confirmed = confirmed  # the batch's set of unconfirmed calls, emptied here
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def _settle(self, tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [self.pending.pop(tag)] if tag in self.pending else []
        settled = []
        while self.order and self.order[0] <= tag:
            index = self.pending.pop(self.order.popleft(), None)
            if index is not None:
                settled.append(index)
        return settled

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirmed.difference_update(self._settle(delivery_tag, multiple))

    def _on_nack(self, delivery_tag: int, multiple: bool, *_: Any) -> None:
        self.refused.extend(self._settle(delivery_tag, multiple))

    def publish(self, index: int, message: amqp.Message, exchange: str, routing_key: str) -> None:
        tag = self.next_tag
        self.pending[tag] = index  # before publishing: the ack may come at once
        self.order.append(tag)
        self.next_tag += 1
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key)


def send_batch(
    task: Any,
    calls: Sequence[Call],
    timeout: float | None,
    on_outcome: Callable[[str, str, Any], None] | None = None,
) -> BatchOutcome:
    """Publish every call (all checked first), then collect outcomes until `timeout`.

    Raises `BrokerUnreachable` if the broker stays away past the deadline while calls are
    still unconfirmed; outcomes missing at the deadline stay None.
    """
    return _BatchSender(task, calls, timeout, on_outcome).run()


class _BoundedClose:
    """Closes a connection without waiting long for RabbitMQ's answer.

    A broker under a resource alarm stops reading from publishing connections, so the
    Close handshake could wait forever; after CLOSE_TIMEOUT the socket is simply dropped.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def close(self) -> None:
        transport = getattr(self.conn.connection, "transport", None) if self.conn.connected \
            else None
        try:
            if transport is not None and transport.sock is not None:
                transport.sock.settimeout(CLOSE_TIMEOUT)
            self.conn.release()
        except Exception:  # the broker did not answer: drop the socket
            self.conn.collect()


class _Deadline(Exception):
    """The batch's deadline passed while RabbitMQ had not confirmed every call."""


class _BatchSender:
    def __init__(self, task: Any, calls: Sequence[Call], timeout: float | None,
                 on_outcome: Callable[[str, str, Any], None] | None) -> None:
        self.started = time.perf_counter()  # rates count the checks too
        self.task, self.app, self.on_outcome = task, task.app, on_outcome
        contract = type(task).contract
        self.checked = [check_call(contract, args, kwargs) for args, kwargs in calls]
        self.headers = contract_headers(contract)
        self.rpc = str(self.app.conf.result_backend).startswith("rpc")
        ids = [str(uuid.uuid4()) for _ in self.checked]
        self.index = {task_id: i for i, task_id in enumerate(ids)}
        self.report = BatchOutcome(ids, [None] * len(ids))
        self.outstanding = len(ids)
        self.reply = Queue(f"celery_tasks.reply.{uuid.uuid4()}", Exchange(""), durable=True,
                           auto_delete=False,
                           queue_arguments={"x-expires": REPLY_QUEUE_TTL_MS,
                                            "x-queue-type": "classic"})
        self.queue = self.app.amqp.queues[task.name]
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.unconfirmed = set(range(len(ids)))
        # Celery builds one message; the batch reuses its headers and embedded options.
        template, props, (_, _, self.embed), _ = self.app.amqp.create_task_message(
            "template", task.name, (), {}, reply_to=self.reply.name if self.rpc else None,
            time_limit=task.time_limit, soft_time_limit=task.soft_time_limit)
        self.template = {**template, **self.headers}
        self.reply_to = props.get("reply_to") or ""

    def left(self, cap: float) -> float:
        """Seconds to the deadline, at most `cap`."""
        return cap if self.deadline is None else min(cap, self.deadline - time.monotonic())

    def run(self) -> BatchOutcome:
        start = self.started
        errors = self.app.connection_for_write().connection_errors
        while True:
            try:
                self._round(start)
                break
            except _Deadline:
                self.report.unconfirmed_ids = [self.report.task_ids[i]
                                               for i in sorted(self.unconfirmed)]
                self.report.errors.append(
                    f"{len(self.unconfirmed)} calls not confirmed by RabbitMQ by the deadline")
                break
            except errors as exc:
                self.report.errors.append(f"connection lost: {exc}")
                if self.left(1.0) <= 0:
                    if self.unconfirmed:
                        raise BrokerUnreachable(
                            f"lost the broker with {len(self.unconfirmed)} calls unconfirmed: "
                            f"{exc}") from None
                    break
                time.sleep(0.5)
        if not self.rpc:
            self._collect_from_backend()
        self.report.elapsed = time.perf_counter() - start
        return self.report

    def _round(self, start: float) -> None:
        """Connect, (re)publish what RabbitMQ has not confirmed, collect replies."""
        # Confirms are collected in bulk here, so py-amqp must not await each one itself.
        base = self.app.connection_for_write()
        options = {k: v for k, v in base.transport_options.items() if k != "confirm_publish"}
        with contextlib.closing(_BoundedClose(base.clone(transport_options=options))) as bounded:
            conn = bounded.conn
            conn.ensure_connection(max_retries=None, interval_start=0.2, interval_step=0.5,
                                   interval_max=2.0, timeout=max(self.left(60.0), 0.1))
            declare_topology(self.app, [self.task.name], conn)  # a producer may come first
            if self.rpc:
                Consumer(conn.channel(), [self.reply], callbacks=[self._on_reply],
                         no_ack=True, accept=["json"]).consume()
            publisher = _Publisher(conn, self.unconfirmed)
            if self.report.published_in:  # a later round: these are sent again
                self.report.republished += len(self.unconfirmed)
            for i in sorted(self.unconfirmed):
                self._publish(publisher, i)
                while len(publisher.pending) >= WINDOW:
                    self._drain(conn, publisher)
            while publisher.pending or publisher.refused:
                for i in publisher.refused:  # nacked by RabbitMQ: send again
                    self.report.republished += 1
                    self._publish(publisher, i)
                publisher.refused = []
                self._drain(conn, publisher)
            self.report.published_in = self.report.published_in or time.perf_counter() - start
            while self.rpc and self.outstanding and self.left(1.0) > 0:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=max(self.left(1.0), 0.01))

    def _drain(self, conn: Any, publisher: _Publisher) -> None:
        """Wait for confirms (and replies); a quiet second is not a lost connection."""
        try:
            conn.drain_events(timeout=max(self.left(1.0), 0.01))
        except TimeoutError:
            if self.left(1.0) <= 0:
                raise _Deadline from None

    def _publish(self, publisher: _Publisher, i: int) -> None:
        """One Celery protocol-2 task message, built from a template made by Celery once."""
        args, kwargs = self.checked[i]
        task_id = self.report.task_ids[i]
        headers = dict(self.template, id=task_id, root_id=task_id,
                       argsrepr=repr(args)[:1024], kwargsrepr=repr(kwargs)[:1024])
        body = json.dumps((args, kwargs, self.embed), separators=(",", ":"))
        message = amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                               application_headers=headers, delivery_mode=2, priority=0,
                               correlation_id=task_id, reply_to=self.reply_to)
        publisher.publish(i, message, self.queue.exchange.name, self.queue.routing_key)

    def _on_reply(self, body: Any, message: Any) -> None:
        if not isinstance(body, dict):
            return
        task_id, status = body.get("task_id"), body.get("status")
        if task_id not in self.index or status not in states.READY_STATES:
            return
        value = body.get("result")
        if status != states.SUCCESS:
            value = self.app.backend.exception_to_python(value)
        self._settle(str(task_id), str(status), value)

    def _settle(self, task_id: str, status: str, value: Any) -> None:
        i = self.index[task_id]
        if self.report.outcomes[i] is None:
            self.report.outcomes[i] = (status, value)
            self.outstanding -= 1
            if self.on_outcome is not None:
                self.on_outcome(task_id, status, value)

    def _collect_from_backend(self) -> None:
        """A durable result backend: results are read from it, not from a reply queue."""
        results = [self.task.AsyncResult(task_id) for task_id in self.report.task_ids]
        with contextlib.suppress(CeleryTimeoutError):
            if results and results[0].backend.supports_native_join:
                for task_id, meta in ResultSet(results).iter_native(
                        timeout=self.left(3600.0) if self.deadline else None, interval=0.05):
                    self._settle(task_id, meta["status"], meta["result"])
                return
            for result in results:  # e.g. the database backend: one result at a time
                value = result.get(timeout=max(self.left(3600.0), 0.01) if self.deadline
                                   else None, propagate=False, interval=0.05)
                self._settle(result.id, result.state, value)
