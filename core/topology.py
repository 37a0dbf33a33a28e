"""The broker objects of a task: its queue, its exchange and its dead-letter queue.

Each task `name` gets a topic exchange `name` and a durable queue `name` bound to it with
routing key `name` (a topic exchange, because Celery's native delayed delivery, used for
retries with backoff, cannot route through direct exchanges). By default the queue is a
quorum queue: replicated where RabbitMQ is clustered, with a delivery limit that ends a
crash loop, and at-least-once dead-lettering into `name.dead` through the direct exchange
`celery_tasks.dead`. Nothing a worker gives up on is dropped: it waits there.

Every quorum queue declared here has an explicit delivery limit (RabbitMQ 4.x gives 20 to
one without): a task queue the setting's, a dead-letter queue `DEAD_LETTER_DELIVERY_LIMIT`,
so that an operator who takes and returns its messages while inspecting them never makes
RabbitMQ drop one (a dead-letter queue has no dead-letter queue of its own). Each
dead-letter exchange exists before any queue that names it.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from .errors import ConfigError, TopologyMismatch, refusal

logger = logging.getLogger("celery_tasks.topology")

DEAD_LETTER_EXCHANGE = "celery_tasks.dead"
#: Deliveries of one dead-lettered message before RabbitMQ would drop it: never, in practice.
DEAD_LETTER_DELIVERY_LIMIT = 1_000_000
#: Celery's native delayed delivery (retries with a countdown, on quorum queues): its queues
#: celery_delayed_27 .. _0 dead-letter into the exchanges celery_delayed_26 .. _0 and this.
DELAY_EXCHANGES = (*(f"celery_delayed_{level}" for level in range(28)), "celery_delayed_delivery")


def dead_letter_name(name: str) -> str:
    return f"{name}.dead"


def task_queue(name: str, queue_type: str = "quorum", delivery_limit: int = 5,
               dead_letter: bool = True) -> Queue:
    """The queue that carries only the task `name`."""
    arguments: dict[str, Any] = {"x-queue-type": queue_type}
    if dead_letter:
        arguments |= {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                      "x-dead-letter-routing-key": name}
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = delivery_limit
        if dead_letter:
            arguments |= {"x-dead-letter-strategy": "at-least-once",
                          "x-overflow": "reject-publish"}
    return Queue(name, Exchange(name, type="topic", durable=True), routing_key=name,
                 durable=True, queue_arguments=arguments)


def dead_letter_queue(name: str, queue_type: str = "quorum") -> Queue:
    """Where messages of task `name` go that no worker could complete."""
    arguments: dict[str, Any] = {"x-queue-type": queue_type}
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = DEAD_LETTER_DELIVERY_LIMIT
    return Queue(dead_letter_name(name), Exchange(DEAD_LETTER_EXCHANGE, type="direct",
                                                  durable=True),
                 routing_key=name, durable=True, queue_arguments=arguments)


def declare_delay_exchanges(conn: Any) -> None:
    """Declare the exchanges of Celery's native delayed delivery before its queues, each of
    which names the next exchange as its dead-letter exchange (kombu declares each exchange
    after the queue that names it, which RabbitMQ 4 warns about)."""
    with conn.channel() as channel:
        for name in DELAY_EXCHANGES:
            Exchange(name, type="topic", durable=True)(channel).declare()


def declare_topology(app: Celery, names: list[str] | None = None, conn: Any = None) -> None:
    """Declare the queues of `app` (or only those of tasks `names`) and their dead-letter
    queues on the broker, now, on `conn` or a connection of its own.

    A queue that already exists with other arguments (say, a classic queue left by an
    older version) is a `TopologyMismatch` naming the queue and the difference. A user
    without the permission to declare a queue (a producer's, whose role may not delete task
    queues) leaves dead-letter queues to the workers, uses a task queue as it is if it
    exists (its workers declared it), and is a `ConfigError` if it does not.
    """
    queues = [q for q in app.amqp.queues.values() if names is None or q.name in names]
    dead: list[Queue] = []
    if app.conf.get("celery_tasks_dead_letter", True):  # the dead-letter exchange first
        dead = [dead_letter_queue(q.name, app.conf.task_default_queue_type) for q in queues]
    queues = [*dead, *queues]
    if conn is None:
        with app.connection_for_write() as own:
            return declare_topology(app, names, own)
    for queue in queues:
        try:
            with conn.channel() as channel:
                queue(channel).declare()
        except Exception as exc:
            code, text = refusal(exc)
            if (code == 406 and queue.name.endswith(".dead")
                    and "'x-delivery-limit'" in text and "current is none" in text):
                _warn_unlimited(queue.name)  # declared by a version before this one
                continue
            if code == 406 or "PRECONDITION" in str(exc):
                raise TopologyMismatch(
                    f"queue {queue.name!r} exists with other arguments than this version "
                    f"declares ({text}): drain it, then delete it "
                    f"(rabbitmqctl delete_queue {queue.name}), or set CELERY_TASKS_QUEUE_TYPE "
                    "to match it"
                ) from None
            if code == 403:
                if queue in dead or _exists(conn, queue.name):
                    continue
                raise ConfigError(
                    f"RabbitMQ refused to declare queue {queue.name!r} ({text}), and it does "
                    "not exist yet: start a worker for its task first (workers declare their "
                    "queues), or grant the user configure permission on it"
                ) from None
            raise
    return None


@cache
def _warn_unlimited(name: str) -> None:
    logger.warning(
        "dead-letter queue %s was declared by an older version without a delivery limit: "
        "RabbitMQ 4 drops a message of it returned 20 times; when it is empty, delete it "
        "(rabbitmqctl delete_queue %s) and the workers declare it again with one", name, name)


def _exists(conn: Any, name: str) -> bool:
    """Whether queue `name` exists (a passive declare, which needs no permission)."""
    try:
        with conn.channel() as channel:
            channel.queue_declare(name, passive=True)
    except conn.channel_errors:
        return False
    return True
