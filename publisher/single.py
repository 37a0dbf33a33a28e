"""The single-call path: one call, one result, on a connection each thread keeps.

Celery's `delay().get()` takes a connection and a producer from its pools, awaits the
publisher confirm before it starts waiting for the result, and goes through its result
machinery. Here each thread keeps one connection (its `Line`) with a channel in confirm
mode and its own durable reply queue: a call publishes one task message (the batch path's
`MessageFactory`) and then takes the confirm and the reply as they come, in either order.

Nothing is lost on the way: a call is published again if its connection drops before
RabbitMQ confirmed it, or if RabbitMQ refuses it (nack); a reply sent while the
connection was down waits in the durable reply queue. At-least-once: a task may run twice.

Used by `remote(...)` calls and `python -m producer TASK ARGS` when the broker is
RabbitMQ and results come back by `rpc://`; otherwise Celery's own path runs. Each thread
that calls holds one connection and one reply queue (gone 10 minutes after its
connection); a line idle for more than half the heartbeat connects again on its next call.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from amqp.exceptions import NotFound
from kombu import Consumer
from kombu.exceptions import OperationalError

from ..core import tracing
from ..core.contract import check_call, payload_limit
from ..core.errors import BrokerUnreachable, TaskTimeout, message_refused
from ..core.topology import declare_topology
from ..core.wire import MessageFactory, message_factory, reply_outcome
from .connection import (
    NACK_PAUSE,
    BoundedClose,
    confirming_connection,
    connect_within,
    drain_once,
    left,
    reply_queue,
    supports_batch_path,
    uses_rpc,
)

__all__ = ["Line", "call", "line_for", "lines_open", "supports_single_call_path"]

#: Seconds between reconnection attempts while a call's deadline allows.
RECONNECT_PAUSE = 0.5


def supports_single_call_path(app: Any) -> bool:
    """RabbitMQ (publisher confirms) with `rpc://` results; other setups use Celery's path."""
    return supports_batch_path(app) and uses_rpc(app)


def call(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
         timeout: float | None) -> tuple[str, str, Any]:
    """Check one call against the contract, publish it and wait up to `timeout` seconds
    (None: forever) for its outcome: (task id, status, value), with the task's error as
    the value of a failure.

    Raises `BadArguments` before anything is published, `TaskTimeout` at the deadline and
    `BrokerUnreachable` if RabbitMQ stays away past it with the call unconfirmed.
    """
    args, kwargs = check_call(type(task).contract, args, kwargs, limit=payload_limit(task.app))
    line = line_for(task.app)
    active = tracing.tracer()
    if active is None:
        return line.call(task, args, kwargs, timeout)
    with tracing.sending(active, task) as sending:
        outcome = line.call(task, args, kwargs, timeout, sending.headers)
        sending.sent(*outcome)
        return outcome


_lines = threading.local()


def line_for(app: Any) -> Line:
    """This thread's line to `app`'s broker (a forked child makes its own). Every app of a
    process shares its settings: `remote()` made anew per request still uses one line."""
    lines: dict[str, Line] = _lines.__dict__.setdefault("by_broker", {})
    key = str(app.conf.broker_url)
    line = lines.get(key)
    if line is None or line.pid != os.getpid():
        line = lines[key] = Line(app)
    return line


def lines_open() -> int:
    """How many lines this thread holds (one per broker its calls went to)."""
    return len(_lines.__dict__.get("by_broker", {}))


class Line:
    """One thread's connection for single calls, reconnected when it drops."""

    def __init__(self, app: Any) -> None:
        self.app, self.pid = app, os.getpid()
        # ensure_connection wraps what it met in kombu's OperationalError. A 404 (the task's
        # exchange deleted) closes the channel: connect again, which declares it again.
        self.errors = (*app.connection_for_write().connection_errors, OperationalError,
                       NotFound)
        self.heartbeat = float(app.conf.broker_heartbeat or 0)
        self.used_at = 0.0
        self.reply = reply_queue(app)  # the same queue across reconnections: replies wait there
        self.factories: dict[str, MessageFactory] = {}
        self.conn: Any = None
        self.declared: set[str] = set()  # task names whose queues this connection declared
        self.sent = 0  # messages published on this connection: the last one's delivery tag
        # The call under way: its id, the delivery tag of its last publish, whether RabbitMQ
        # confirmed, refused or returned that, its outcome.
        self.current, self.tag = "", 0
        self.confirmed = self.refused = self.returned = False
        self.outcome: tuple[str, Any] | None = None

    def call(self, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
             timeout: float | None,
             trace: Mapping[str, str] | None = None) -> tuple[str, str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        factory = self.factories.get(task.name)
        if factory is None:
            factory = self.factories[task.name] = message_factory(task, self.reply.name)
        self.current = task_id = str(uuid.uuid4())
        self.confirmed = self.refused = self.returned = False
        self.outcome = None
        message = factory.message(task_id, args, kwargs, trace)
        published = False
        if self.conn is not None and self.heartbeat and (
                time.monotonic() - self.used_at > self.heartbeat / 2):
            # Idle, it sent no heartbeat: RabbitMQ may have closed it (after two missed).
            self._drop()
        try:
            while True:
                try:
                    self._connect(task, deadline)
                    if not (self.confirmed or self.outcome):  # again after a lost connection
                        self._publish(task, message)
                        published = True
                    status, value = self._wait(task, message, deadline)
                    return task_id, status, value
                except TaskTimeout as exc:  # an OSError too: caught before the next
                    raise TaskTimeout(f"no result for {task.name}[{task_id}] within "
                                      f"{timeout:g} s: {exc}") from None
                except self.errors as exc:
                    self._drop()
                    if left(deadline) > RECONNECT_PAUSE:
                        time.sleep(RECONNECT_PAUSE)
                        continue
                    if self.confirmed:
                        raise TaskTimeout(
                            f"no result for {task.name}[{task_id}] within {timeout:g} s: lost "
                            f"the broker after it confirmed the task ({exc}); the task stays "
                            "queued and may still run") from None
                    raise BrokerUnreachable(
                        f"lost the broker before it confirmed {task.name}[{task_id}]: {exc}"
                        if published else f"could not reach the broker to send "
                        f"{task.name}[{task_id}]: {exc}; nothing was sent") from None
                except BaseException as exc:  # Ctrl-C, a channel error: start afresh
                    self._drop()
                    refused = message_refused(exc, f"{task.name}[{task_id}]")
                    if refused is not None:
                        raise refused from None
                    raise
        finally:
            self.current = ""  # a late reply or confirm of this call is not wanted
            self.used_at = time.monotonic()

    def _connect(self, task: Any, deadline: float | None) -> None:
        if self.conn is None:
            conn = confirming_connection(self.app)
            connect_within(conn, deadline)
            self.conn, self.declared, self.sent = conn, set(), 0
            self.publisher = conn.channel()
            self.publisher.confirm_select()
            self.publisher.events["basic_ack"].add(self._on_ack)
            self.publisher.events["basic_nack"].add(self._on_nack)
            self.publisher.events["basic_return"].add(self._on_return)
            replies = conn.channel()
            Consumer(replies, [self.reply], callbacks=[self._on_reply], no_ack=False,
                     accept=["json"]).consume()
        else:
            self.conn.heartbeat_check()  # a connection the broker dropped while idle
        if task.name not in self.declared:  # a producer may come before any worker
            declare_topology(task.app, [task.name], self.conn)
            self.declared.add(task.name)

    def _publish(self, task: Any, message: Any) -> None:
        queue = task.app.amqp.queues[task.name]
        self.refused = self.returned = False
        self.sent += 1
        self.tag = self.sent  # only this publish's confirm counts for the call
        # Mandatory: a message no queue takes (its queue deleted since this connection
        # declared it) comes back instead of being confirmed and dropped.
        self.publisher.basic_publish(message, exchange=queue.exchange.name,
                                     routing_key=queue.routing_key, mandatory=True)

    def _wait(self, task: Any, message: Any, deadline: float | None) -> tuple[str, Any]:
        """Take confirms and replies until the call's outcome came (or the deadline)."""
        while self.outcome is None:
            if self.refused:  # nacked by RabbitMQ: send again, after a pause
                time.sleep(NACK_PAUSE)
                self._publish(task, message)
            if self.returned:  # no queue took it: declare the task's queue again, resend
                declare_topology(task.app, [task.name], self.conn)
                self._publish(task, message)
            if left(deadline) <= 0:
                raise TaskTimeout(
                    f"is a worker running for {task.name}? The task stays queued and may "
                    "still run" if self.confirmed else
                    "RabbitMQ never confirmed the task, so it may not be queued")
            drain_once(self.conn, deadline)
        return self.outcome

    def _settles(self, delivery_tag: int, multiple: bool) -> bool:
        """A confirm (or nack) of `delivery_tag` settles the call's last publish."""
        return self.tag <= delivery_tag if multiple else self.tag == delivery_tag

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # A returned message is confirmed too (after its return): it is not queued.
        if self._settles(delivery_tag, multiple) and not self.returned:
            self.confirmed = True

    def _on_nack(self, delivery_tag: int, multiple: bool, *_: Any) -> None:
        if self._settles(delivery_tag, multiple):
            self.refused = True

    def _on_return(self, exc: Exception, exchange: str, routing_key: str,
                   message: Any) -> None:
        if message.properties.get("correlation_id") == self.current:
            self.returned = True

    def _on_reply(self, body: Any, message: Any) -> None:
        outcome = reply_outcome(self.app, body)
        if outcome is not None and outcome[0] == self.current:  # else a call given up on
            self.outcome = outcome[1:]
        message.ack()

    def _drop(self) -> None:
        """Forget a lost connection; the next attempt connects again."""
        if self.conn is not None:
            BoundedClose(self.conn).close()
        self.conn = None

