"""`rpc://` without a queue declaration per call.

Celery's rpc backend declares its reply queue before every task it sends, because kombu
does not remember declarations of auto-delete queues: about half a millisecond per
`delay()`. This backend declares it once per channel and again after `REDECLARE_AFTER`
seconds, and is otherwise Celery's. Its reply queue is not auto-delete: if the process's
result consumer loses its connection, the queue (and any result in it) stays until the
consumer is back; RabbitMQ deletes it once unused for `result_expires`. On a cluster it is
a quorum queue (CELERY_TASKS_REPLY_QUEUE_TYPE), so that it outlives any one node.

`wait_for` is how every caller waits for one result, whatever the backend.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

from celery._state import task_join_will_block
from celery.backends.rpc import RPCBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.common import maybe_declare
from kombu.exceptions import OperationalError

from .errors import BrokerUnreachable, CeleryTasksError

#: Seconds after which a channel declares its reply queue again, in case it expired.
REDECLARE_AFTER = 60.0


class ReplyQueueBackend(RPCBackend):
    """Celery's `rpc://` backend, declaring its reply queue once per channel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._declared: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    @property
    def binding(self) -> Any:
        queue_type = self.app.conf.get("celery_tasks_reply_queue_type") or "classic"
        return self.Queue(self.oid, self.exchange, self.oid, durable=True, auto_delete=False,
                          expires=self.expires, queue_arguments={"x-queue-type": queue_type})

    def on_task_call(self, producer: Any, task_id: str) -> None:
        if task_join_will_block():  # a prefork child: the parent declared it
            return
        self.declare(producer.channel)

    def declare(self, channel: Any) -> None:
        """Declare the reply queue on `channel`: once, and again after `REDECLARE_AFTER`
        seconds (Celery's rpc queues are never cached by kombu)."""
        now = time.monotonic()
        if now - self._declared.get(channel, -REDECLARE_AFTER) < REDECLARE_AFTER:
            return
        declare_within_retries(self.app, self.binding(channel))
        self._declared[channel] = now


def declare_reply_queue(app: Any) -> str:
    """Declare the reply queue `app`'s `rpc://` results come to (a workflow's steps reply
    there, though this app may publish none of them); its name. On a connection from the
    app's pool, as every call's own declaration: a new connection per workflow cost a TCP
    and AMQP handshake (5 ms here)."""
    backend = app.backend
    with app.pool.acquire(block=True) as conn:
        if isinstance(backend, ReplyQueueBackend):
            backend.declare(conn.default_channel)
        else:  # Celery's own rpc backend (an app not made by create_worker_from)
            declare_within_retries(app, backend.binding(conn.default_channel))
    return str(backend.oid)


def declare_within_retries(app: Any, queue: Any) -> None:
    """Declare `queue` (bound to a channel), reconnecting as a publish does: within
    `task_publish_retry_policy`, then OperationalError. A pooled connection whose broker
    went away still looks connected, and kombu's own retry, unbounded, would wait forever."""
    maybe_declare(queue, retry=True, **app.conf.task_publish_retry_policy)


def wait_for(result: Any, timeout: float | None, interval: float) -> Any:
    """`result.get` without raising the task's error; a broker or result backend lost while
    waiting is BrokerUnreachable (exit 5), not a traceback. Celery's TimeoutError passes."""
    with backend_errors(f"the result of {result.id}"):
        return result.get(timeout=timeout, propagate=False, interval=interval)


@contextlib.contextmanager
def backend_errors(what: str) -> Iterator[None]:
    """A broker or result backend lost while waiting for `what` is BrokerUnreachable (exit
    5), in one line. Celery's TimeoutError and this project's own errors pass."""
    try:
        yield
    except (CeleryTimeoutError, CeleryTasksError):
        raise
    except OperationalError as exc:
        raise BrokerUnreachable(f"lost the connection to the broker: {exc}") from None
    except Exception as exc:  # the backend's own client failed (redis, SQLAlchemy)
        raise BrokerUnreachable(
            f"lost the result backend while waiting for {what}: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
