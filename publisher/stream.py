"""The batch path: many calls of one contract, with batched publisher confirms.

Celery awaits a publisher confirm for every message (celery/celery#9887) and, with
`rpc://`, redeclares its reply queue on every call. Here a batch is published on one
channel in confirm mode, with a window of unconfirmed messages that RabbitMQ acknowledges
in bulk; a message RabbitMQ refuses (nack) or returns (its queue was deleted), or that
was unconfirmed when the connection dropped, is published again (at-least-once). With
`rpc://`, results come back to one reply queue declared once per batch; it is durable and
expires on its own, so a reconnecting producer still finds its results. The messages are
ordinary Celery task messages, carrying the contract headers: any worker runs them. They
go straight to the task's queue, by the default exchange: the task's own (topic) exchange
also holds Celery's `#.<task>` binding for delayed delivery, and matching it costs
RabbitMQ a third of its publish rate. Other queues bound to the task's exchange do not
get them. A user RabbitMQ does not let write to the default exchange (it reaches every
queue of the vhost) publishes by the task's exchange instead.

`send_batch` takes a list and returns every outcome in order. `send_stream` takes any
iterable (a generator of a million calls) and hands each outcome to a callback as it
arrives: with `rpc://` it keeps at most `MAX_IN_FLIGHT` calls between publish and result,
so the producer's memory stays flat whatever the number of calls.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet
from kombu import Consumer

from ..core import tracing
from ..core.contract import check_call, payload_limit
from ..core.errors import (
    BadArguments,
    BrokerUnreachable,
    ConfigError,
    TopologyMismatch,
    message_refused,
    refusal,
)
from ..core.topology import declare_topology
from ..core.wire import message_factory, reply_outcome
from .confirms import FLUSH_BYTES, Publisher
from .connection import (
    NACK_PAUSE,
    BoundedClose,
    confirming_connection,
    connect_within,
    drain_once,
    left,
    reply_queue,
    uses_rpc,
)

__all__ = ["MAX_IN_FLIGHT", "BatchOutcome", "Call", "OnSettled", "StreamOutcome",
           "collect_results", "send_batch", "send_stream"]

#: Unconfirmed messages allowed in flight before the publisher waits for confirms.
WINDOW = 2000
#: Replies RabbitMQ may push before the stream acknowledges them; acknowledged in bulk.
REPLY_PREFETCH = 2000
REPLY_ACK_EVERY = 500
#: Calls published but without an outcome yet that `send_stream` allows (with `rpc://`).
MAX_IN_FLIGHT = 10_000

#: Frames (confirms, replies) taken at most after each write, without waiting.
POLL_FRAMES = 1000


Call = tuple[Sequence[Any], Mapping[str, Any]]
#: (index, task id, status, value) of one settled call.
OnSettled = Callable[[int, str, str, Any], None]


@dataclass
class StreamOutcome:
    """How a stream of calls went; the outcomes themselves went to the callback."""

    sent: int = 0  # calls taken from the iterable and published (at least once)
    settled: int = 0
    pending_ids: list[str] = field(default_factory=list)  # sent, no outcome by the deadline
    #: Calls RabbitMQ never confirmed by the deadline: they may not be queued at all.
    unconfirmed_ids: list[str] = field(default_factory=list)
    exhausted: bool = False  # every call of the iterable was sent
    published_in: float = 0.0  # seconds from the start until every call was confirmed
    connecting: float = 0.0  # of those, spent connecting and declaring queues
    republished: int = 0
    connections_lost: int = 0  # each followed by a new connection (another node, if any)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class BatchOutcome(StreamOutcome):
    """A stream of a list: also what became of each call, in order, as
    ('SUCCESS'|'FAILURE', value), or None (pending)."""

    task_ids: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, Any] | None] = field(default_factory=list)


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
    started = time.perf_counter()  # rates count the checks too
    contract = type(task).contract
    limit = payload_limit(task.app)
    checked = [check_call(contract, args, kwargs, limit=limit) for args, kwargs in calls]
    ids = [str(uuid.uuid4()) for _ in checked]
    outcomes: list[tuple[str, Any] | None] = [None] * len(ids)

    def settled(index: int, task_id: str, status: str, value: Any) -> None:
        outcomes[index] = (status, value)
        if on_outcome is not None:
            on_outcome(task_id, status, value)

    items = ((task_id, a, k) for task_id, (a, k) in zip(ids, checked, strict=True))
    done = _Stream(task, items, timeout, settled, max_in_flight=None, started=started,
                   buffered=True).run()
    return BatchOutcome(**vars(done), task_ids=ids, outcomes=outcomes)


def send_stream(
    task: Any,
    calls: Iterable[Call],
    timeout: float | None,
    on_settled: OnSettled,
    *,
    checked: bool = False,
    max_in_flight: int = MAX_IN_FLIGHT,
    wait: bool = True,
    buffered: bool = False,
    reply_to: str | None = None,
) -> StreamOutcome:
    """Publish calls as they are taken from `calls`, handing each outcome to `on_settled`.

    Each call is checked against the contract when it is taken (`checked=True`: they come
    from `check_call` already): a bad call ends the stream, the calls before it are sent and
    settled as usual, then `BadArguments` is raised. With `rpc://`, at most `max_in_flight`
    calls wait for their outcome at any time. At the deadline, the calls in flight are
    `pending_ids` and the rest of `calls` is not taken (`exhausted` is False).

    With `wait=False` the stream ends once RabbitMQ has confirmed every call: nothing is
    settled, and `pending_ids` names every call sent (their results, with a durable
    backend, can be fetched later by id). `reply_to` then names the reply queue their
    `rpc://` results go to (a group's: `celery_tasks.canvas`).

    `buffered=True` says that `calls` never waits (a list, `itertools.repeat`): calls are
    then written to the broker FLUSH_BYTES at a time, much faster. Otherwise each call is
    written as soon as it is taken, so that none waits unsent while `calls` waits.
    """
    contract, limit = type(task).contract, payload_limit(task.app)

    def items() -> Iterator[tuple[str, Sequence[Any], Mapping[str, Any]]]:
        for args, kwargs in calls:
            if not checked:
                args, kwargs = check_call(contract, args, kwargs, limit=limit)
            yield str(uuid.uuid4()), args, kwargs

    return _Stream(task, items(), timeout, on_settled,
                   max_in_flight=max_in_flight if wait else None, wait=wait,
                   buffered=buffered, reply_to=reply_to).run()


class _Deadline(Exception):
    """The deadline passed before every call was sent and settled."""


class _Stream:
    """Publishes calls with batched confirms and settles them from replies or the backend."""

    def __init__(self, task: Any, items: Iterator[tuple[str, Sequence[Any], Mapping[str, Any]]],
                 timeout: float | None, on_settled: OnSettled,
                 max_in_flight: int | None, wait: bool = True,
                 started: float | None = None, buffered: bool = False,
                 reply_to: str | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self.task, self.app, self.on_settled = task, task.app, on_settled
        self.items, self.taken = items, 0
        self.wait, self.buffered = wait, buffered
        # Straight to the queue by the default exchange, unless the user may not write to
        # it (then by the task's exchange, as Celery publishes).
        self.via_exchange = self.rerouting = False
        self.rpc = uses_rpc(self.app)
        # Without rpc:// outcomes are read from the backend after publishing, so no bound.
        self.max_in_flight = max_in_flight if self.rpc else None
        self.in_flight: dict[str, tuple[int, Sequence[Any], Mapping[str, Any]]] = {}
        self.unconfirmed: set[str] = set()  # in flight and not yet confirmed by RabbitMQ
        self.report = StreamOutcome()
        self.refused: BadArguments | None = None  # a bad call ended the stream
        self.unacked: Any = None  # the last reply taken and not yet acknowledged
        self.replies, self.acked_at = 0, time.monotonic()
        self.reply = reply_queue(self.app)
        self.queue = self.app.amqp.queues[task.name]
        self.deadline = None if timeout is None else time.monotonic() + timeout
        if reply_to is None and self.rpc and wait:
            reply_to = self.reply.name
        self.messages = message_factory(task, reply_to)
        self.trace: dict[str, str] | None = None  # the batch's trace context, when traced

    def left(self, cap: float) -> float:
        """Seconds to the deadline, at most `cap`."""
        return left(self.deadline, cap)

    def run(self) -> StreamOutcome:
        active = tracing.tracer()
        if active is None:
            return self._run()
        with tracing.sending(active, self.task, batch=True) as sending:
            self.trace = sending.headers  # one trace for the batch: every message carries it
            report = self._run()
            sending.span.set_attribute(tracing.ATTRIBUTE["batch_size"], report.sent)
            if (self.wait and report.pending_ids) or report.errors:
                tracing.set_outcome(sending.span, "incomplete")
            return report

    def _run(self) -> StreamOutcome:
        probe = self.app.connection_for_write()
        errors, channel_errors = probe.connection_errors, probe.channel_errors
        while True:
            try:
                self._round()
                break
            except _Deadline:
                if self.unconfirmed:
                    self.report.errors.append(
                        f"{len(self.unconfirmed)} calls not confirmed by RabbitMQ by the deadline")
                break
            except channel_errors as exc:
                if not self._may_use_task_exchange(exc):
                    raise self._refused(exc) from None
            except errors as exc:
                self.report.errors.append(f"connection lost: {exc}")
                self.report.connections_lost += 1
                if self.left(1.0) <= 0:
                    if self.unconfirmed:
                        raise BrokerUnreachable(
                            f"lost the broker with {len(self.unconfirmed)} calls unconfirmed: "
                            f"{exc}") from None
                    break
                time.sleep(0.5)
        if self.wait and not self.rpc:
            self._collect_from_backend()
        order = sorted(self.in_flight, key=lambda task_id: self.in_flight[task_id][0])
        self.report.pending_ids = order
        self.report.unconfirmed_ids = [task_id for task_id in order if task_id in self.unconfirmed]
        self.report.elapsed = time.perf_counter() - self.started
        if self.refused is not None:
            raise self.refused
        return self.report

    def _may_use_task_exchange(self, exc: Exception) -> bool:
        """True, once, if RabbitMQ refused a publish by the default exchange: the stream then
        publishes again (what was not confirmed) by the task's exchange."""
        code, text = refusal(exc)
        if self.via_exchange or code != 403 or "amq.default" not in text:
            return False
        self.via_exchange = self.rerouting = True
        self.report.errors.append(f"publishing by the task's exchange: {text}")
        return True

    def _refused(self, exc: Exception) -> Exception:
        """The one-line error for an operation RabbitMQ refused by closing the channel."""
        code, text = refusal(exc)
        too_large = message_refused(exc, f"a {self.task.name} call")
        if too_large is not None:
            return too_large
        if code == 403:
            return ConfigError(
                f"RabbitMQ refused access while sending {self.task.name} tasks ({text}): the "
                f"user needs write permission on exchange {self.queue.exchange.name!r} (or "
                "amq.default), and configure and read permission on the task's queues and "
                "on the reply queues celery_tasks.reply.*")
        if code in (405, 406):  # an exclusive queue of that name; other arguments
            return TopologyMismatch(f"RabbitMQ refused an operation while sending "
                                    f"{self.task.name} tasks ({text})")
        return BrokerUnreachable(f"RabbitMQ failed while sending {self.task.name} tasks "
                                 f"({text}), with {len(self.unconfirmed)} calls unconfirmed")

    def _round(self) -> None:
        """Connect, (re)publish what RabbitMQ has not confirmed, go on, collect replies."""
        setup = time.perf_counter()
        with contextlib.closing(BoundedClose(confirming_connection(self.app))) as bounded:
            conn = bounded.conn
            connect_within(conn, self.deadline)
            declare_topology(self.app, [self.task.name], conn)  # a producer may come first
            self.unacked = None  # replies of a lost connection come again, unacknowledged
            if self.rpc and self.wait:
                # Replies are acknowledged once settled: a connection lost with replies on
                # the wire finds them again in the (durable) reply queue.
                replies = conn.channel()
                replies.basic_qos(0, REPLY_PREFETCH, False)
                Consumer(replies, [self.reply], callbacks=[self._on_reply],
                         no_ack=False, accept=["json"]).consume()
            route = ((self.queue.exchange.name, self.queue.routing_key) if self.via_exchange
                     else ("", self.queue.name))
            publisher = Publisher(conn, self.unconfirmed, *route)
            self.report.connecting += time.perf_counter() - setup
            again = sorted(self.unconfirmed, key=lambda task_id: self.in_flight[task_id][0])
            if not self.rerouting:  # refused by the default exchange: never queued at all
                self.report.republished += len(again)
            self.rerouting = False
            for task_id in again:  # unconfirmed when the last connection dropped
                self._publish(conn, publisher, task_id)
                self._wait_if_full(conn, publisher)
            while not (self.report.exhausted or self.refused):
                self._wait_if_full(conn, publisher)
                if not self.buffered:  # `items` may wait: send what is taken first
                    self._send(conn, publisher)
                try:
                    item = next(self.items, None)
                except BadArguments as exc:  # the calls before it are sent and settled
                    self.refused = exc
                    break
                if item is None:
                    self.report.exhausted = True
                    break
                task_id, args, kwargs = item
                self.in_flight[task_id] = (self.taken, args, kwargs)
                self.unconfirmed.add(task_id)
                self.taken += 1
                self.report.sent += 1
                self._publish(conn, publisher, task_id)
            self._wait_while(conn, publisher, lambda: bool(publisher.confirms or publisher.refused))
            self.report.published_in = (self.report.published_in
                                        or time.perf_counter() - self.started)
            while self.wait and self.rpc and self.in_flight and self.left(1.0) > 0:
                self._drain(conn)
            self._ack_replies()

    def _wait_if_full(self, conn: Any, publisher: Publisher) -> None:
        """Wait while the confirm window or the calls in flight are full: until half the
        window is confirmed, and until a call in flight has settled."""
        if len(publisher.confirms) >= WINDOW or publisher.refused or self._in_flight_full():
            self._wait_while(conn, publisher, lambda: (len(publisher.confirms) > WINDOW // 2
                                                       or self._in_flight_full()))

    def _in_flight_full(self) -> bool:
        return self.max_in_flight is not None and len(self.in_flight) >= self.max_in_flight

    def _wait_while(self, conn: Any, publisher: Publisher, busy: Callable[[], bool]) -> None:
        """Take confirms and replies while `busy()`; nacked and returned calls are published
        again."""
        while True:
            again = [task_id for task_id in publisher.refused if task_id in self.in_flight]
            publisher.refused = []
            if again:  # nacked or returned by RabbitMQ: send again, after a pause
                time.sleep(NACK_PAUSE)
            if publisher.unroutable:  # the task's queue was deleted: declare it again
                declare_topology(self.app, [self.task.name], conn)
                publisher.unroutable = False
            for task_id in again:
                self.report.republished += 1
                self._publish(conn, publisher, task_id)
            publisher.flush()
            if not busy():
                return
            if self.left(1.0) <= 0:
                raise _Deadline
            self._drain(conn)

    def _drain(self, conn: Any) -> None:
        """Take what the broker sent within a second; acknowledge replies now and then."""
        drain_once(conn, self.deadline)
        if self.unacked and time.monotonic() - self.acked_at > 0.5:
            self._ack_replies()

    def _ack_replies(self) -> None:
        """Acknowledge every reply taken so far, in one frame."""
        if self.unacked is not None:
            self.unacked.ack(multiple=True)
            self.unacked, self.acked_at = None, time.monotonic()

    def _publish(self, conn: Any, publisher: Publisher, task_id: str) -> None:
        """One Celery protocol-2 task message, built from a template made by Celery once.
        Each full buffer is written, then what the broker sent meanwhile is taken."""
        _, args, kwargs = self.in_flight[task_id]
        publisher.publish(task_id, self.messages.message(task_id, args, kwargs, self.trace))
        if publisher.buffered >= FLUSH_BYTES:
            self._send(conn, publisher)

    def _send(self, conn: Any, publisher: Publisher) -> None:
        """Write the buffered publishes, then take the confirms and replies the broker has
        sent already, without waiting."""
        if not publisher.buffer:
            return
        publisher.flush()
        for _ in range(POLL_FRAMES):
            try:
                conn.drain_events(timeout=0)
            except TimeoutError:
                return

    def _on_reply(self, body: Any, message: Any) -> None:
        self.unacked = message  # acknowledged in bulk, with every reply before it
        self.replies += 1
        if self.replies % REPLY_ACK_EVERY == 0:
            self._ack_replies()
        outcome = reply_outcome(self.app, body)
        if outcome is not None:
            self._settle(*outcome)

    def _settle(self, task_id: str, status: str, value: Any) -> None:
        entry = self.in_flight.pop(task_id, None)
        if entry is None:  # settled already (a task run twice replies twice)
            return
        self.unconfirmed.discard(task_id)  # its reply came before its confirm
        self.report.settled += 1
        self.on_settled(entry[0], task_id, status, value)

    def _collect_from_backend(self) -> None:
        """A durable result backend: results are read from it, not from a reply queue."""
        results = [self.task.AsyncResult(task_id) for task_id in self.in_flight]
        with contextlib.suppress(CeleryTimeoutError):
            for task_id, status, value in collect_results(
                    results, self.left(3600.0) if self.deadline else None):
                self._settle(task_id, status, value)


def collect_results(results: Sequence[Any],
                    timeout: float | None) -> Iterator[tuple[str, str, Any]]:
    """(task id, status, value) of Celery results as they arrive, within `timeout` (None:
    forever); raises Celery's TimeoutError at the deadline. Backends that cannot join
    natively (the database one) are read one result at a time."""
    if not results:
        return
    if results[0].backend.supports_native_join:
        for task_id, meta in ResultSet(list(results)).iter_native(timeout=timeout,
                                                                  interval=0.05):
            yield task_id, meta["status"], meta["result"]
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    for result in results:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        value = result.get(timeout=left, propagate=False, interval=0.05)
        yield result.id, result.state, value
