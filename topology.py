"""The broker objects of a task: its queue, its exchange and its dead-letter queue.

Each task `name` gets a topic exchange `name` and a durable queue `name` bound to it with
routing key `name` (a topic exchange, because Celery's native delayed delivery, used for
retries with backoff, cannot route through direct exchanges). By default the queue is a
quorum queue: replicated where RabbitMQ is clustered, with a delivery limit that ends a
crash loop, and at-least-once dead-lettering into `name.dead` through the direct exchange
`celery_tasks.dead`. Nothing a worker gives up on is dropped: it waits there.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from .errors import ConfigError, TopologyMismatch

DEAD_LETTER_EXCHANGE = "celery_tasks.dead"


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
    return Queue(dead_letter_name(name), Exchange(DEAD_LETTER_EXCHANGE, type="direct",
                                                  durable=True),
                 routing_key=name, durable=True, queue_arguments={"x-queue-type": queue_type})


def declare_topology(app: Celery, names: list[str] | None = None, conn: Any = None) -> None:
    """Declare the queues of `app` (or only those of tasks `names`) and their dead-letter
    queues on the broker, now, on `conn` or a connection of its own.

    A queue that already exists with other arguments (say, a classic queue left by an
    older version) is a `TopologyMismatch` naming the queue and the difference; a user
    without the permission to declare it is a `ConfigError`.
    """
    queues = [q for q in app.amqp.queues.values() if names is None or q.name in names]
    if app.conf.get("celery_tasks_dead_letter", True):
        queues += [dead_letter_queue(q.name, app.conf.task_default_queue_type) for q in queues]
    if conn is None:
        with app.connection_for_write() as own:
            return declare_topology(app, names, own)
    for queue in queues:
        try:
            with conn.channel() as channel:
                queue(channel).declare()
        except Exception as exc:
            code, text = getattr(exc, "code", None), getattr(exc, "reply_text", str(exc))
            if code == 406 or "PRECONDITION" in str(exc):
                raise TopologyMismatch(
                    f"queue {queue.name!r} exists with other arguments than this version "
                    f"declares ({text}): drain it, then delete it "
                    f"(rabbitmqctl delete_queue {queue.name}), or set CELERY_TASKS_QUEUE_TYPE "
                    "to match it"
                ) from None
            if code == 403:
                raise ConfigError(
                    f"RabbitMQ refused to declare queue {queue.name!r} ({text}): grant the "
                    "user configure permission on it, or declare it as a user who has it"
                ) from None
            raise
    return None
