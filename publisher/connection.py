"""A producer's connection to RabbitMQ: publisher confirms taken as they come, heartbeats,
deadlines, a close that never hangs, and the reply queue results come back to."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from kombu import Exchange, Queue

__all__ = ["CLOSE_TIMEOUT", "NACK_PAUSE", "REPLY_QUEUE_TTL_MS", "BoundedClose",
           "confirming_connection", "connect_within", "drain_once", "left", "reply_queue",
           "supports_batch_path", "uses_rpc"]

#: Seconds to wait before publishing again what RabbitMQ refused (nack) or returned.
NACK_PAUSE = 0.1
#: Seconds to wait for RabbitMQ to acknowledge closing the batch's connection.
CLOSE_TIMEOUT = 2.0
#: How long an unused reply queue lives after its producer left (RabbitMQ x-expires).
REPLY_QUEUE_TTL_MS = 10 * 60 * 1000


def supports_batch_path(app: Any) -> bool:
    """The batch path needs RabbitMQ (publisher confirms); other brokers use Celery's."""
    return str(app.conf.broker_url).startswith(("amqp", "pyamqp"))


def uses_rpc(app: Any) -> bool:
    """Results come back by `rpc://`, to a reply queue, not from a durable backend."""
    return str(app.conf.result_backend).startswith("rpc")


def left(deadline: float | None, cap: float = float("inf")) -> float:
    """Seconds to `deadline` (a time.monotonic() value; None: none), at most `cap`."""
    return cap if deadline is None else min(cap, deadline - time.monotonic())


def confirming_connection(app: Any) -> Any:
    """A new connection to `app`'s broker whose user takes publisher confirms as they
    come: py-amqp must not await each one itself. With the app's heartbeat: a node that
    dies without closing it (a lost host, a cut network) is noticed in two heartbeats, and
    the caller fails over to another node. (A stream that waits on its iterable for longer
    sends no heartbeat meanwhile: RabbitMQ then closes the connection, and the stream
    connects again when it next publishes, sending again what was not confirmed.)"""
    heartbeat = float(app.conf.broker_heartbeat or 0)
    base = app.connection_for_write()
    options = {k: v for k, v in base.transport_options.items() if k != "confirm_publish"}
    return base.clone(transport_options=options, heartbeat=heartbeat)


def connect_within(conn: Any, deadline: float | None) -> None:
    """Connect `conn`, retrying until `deadline` (at most a minute at a time)."""
    conn.ensure_connection(max_retries=None, interval_start=0.2, interval_step=0.5,
                           interval_max=2.0, timeout=max(left(deadline, 60.0), 0.1))


def drain_once(conn: Any, deadline: float | None) -> None:
    """Take what the broker sends within a second (or by `deadline`); a quiet second is
    not a lost broker. Sends the connection's heartbeat, if it has one, when due."""
    with contextlib.suppress(TimeoutError):
        conn.drain_events(timeout=max(left(deadline, 1.0), 0.01))
    conn.heartbeat_check()


def reply_queue(app: Any) -> Queue:
    """A producer's own reply queue: durable, so that replies outlive a lost connection,
    of the app's reply queue type (quorum on a cluster: replies outlive a node), and gone
    on its own once unused for REPLY_QUEUE_TTL_MS."""
    queue_type = app.conf.get("celery_tasks_reply_queue_type") or "classic"
    return Queue(f"celery_tasks.reply.{uuid.uuid4()}", Exchange(""), durable=True,
                 auto_delete=False, queue_arguments={"x-expires": REPLY_QUEUE_TTL_MS,
                                                     "x-queue-type": queue_type})


class BoundedClose:
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
