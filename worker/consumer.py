"""`ContractConsumer`: a worker's message intake that never drops a message it cannot run,
and that reconnects to a surviving node of a cluster without stalling.

Celery acknowledges (drops) a message whose body cannot be decoded, including pickle
content when only JSON is accepted, and logs each bad message over many lines. Here every
such message — undecodable, refused content type, unknown task, invalid headers — is
rejected into the task's dead-letter queue with one log line, and a caller waiting on a
result gets the error. The worker keeps serving.

When the node a worker is connected to dies, Celery's consumer restarts on another node,
and two of its steps get in the way there:
- its control queue (`NAME.celery.pidbox`) is exclusive, and the dead connection's one is
  "locked" until the cluster declares the node down (a minute): the new one was refused
  (405) and the worker exited. Here each connection listens on a queue of its own
  (`celery_tasks.core.control`): commands reach it all the same, by the fanout exchange.
- native delayed delivery was set up on every node of the broker list in turn, each with
  retries: minutes on a node that is down, for a topology the cluster shares anyway. Here
  it is set up once, on the node the consumer is connected to (`ClusterDelayedDelivery`),
  each exchange before the queue that dead-letters into it.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery.exceptions import NotRegistered
from celery.utils.collections import AttributeDict
from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from celery.worker.control import control_command
from kombu.transport.native_delayed_delivery import (
    declare_native_delayed_delivery_exchanges_and_queues,
)

from ..core.contract import is_contract_class
from ..core.discovery import COMMAND
from ..core.fingerprint import describe_contract, fingerprint
from ..core.topology import declare_delay_exchanges
from ..core.version import pinned_commit
from . import observe

__all__ = ["ClusterDelayedDelivery", "ContractConsumer"]

logger = logging.getLogger("celery_tasks.worker")


@control_command(name=COMMAND)
def celery_tasks_contracts(state: Any) -> dict[str, Any]:
    """What this worker accepts (core/discovery.py): its host, its pinned celery_tasks
    commit and each contract it runs, described."""
    tasks = [t for t in state.consumer.app.tasks.values() if is_contract_class(type(t))]
    return {"host": socket.gethostname(), "commit": pinned_commit(),
            "contracts": [{"name": t.name, "fingerprint": fingerprint(d), "description": d}
                          for t in tasks for d in [describe_contract(type(t))]]}


class ClusterDelayedDelivery(DelayedDelivery):
    """Celery's native delayed delivery, set up on the node the consumer is connected to."""

    def start(self, c: Any) -> None:
        self._validate_configuration(c.app)
        queue_type = c.app.conf.broker_native_delayed_delivery_queue_type
        with c.app.connection_for_write(url=c.connection.as_uri(include_password=True)) as conn:
            declare_delay_exchanges(conn)
            declare_native_delayed_delivery_exchanges_and_queues(conn, queue_type)
            self._bind_queues(c.app, conn)


class ContractConsumer(Consumer):
    """Rejects every message it cannot run into the dead-letter queue, with one log line."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            "celery_tasks.worker.consumer:ClusterDelayedDelivery"
            if step.endswith(":DelayedDelivery") else step
            for step in Consumer.Blueprint.default_steps
        ]

    def _dead_letter(self, message: Any, reason: str, error: BaseException | None) -> None:
        headers = message.headers or {}
        queue = (message.delivery_info or {}).get("routing_key", "?")
        logger.error("dead-lettered a message from queue %s (task %s, id %s): %s", queue,
                     headers.get("task", "?"), headers.get("id", "?"), reason)
        message.reject_log_error(logger, self.connection_errors)
        observe.dead_lettered(str(headers.get("task", "?")), headers.get("id"), headers,
                              _reason(reason))
        task_id, reply_to = headers.get("id"), message.properties.get("reply_to")
        if task_id and reply_to and error is not None:
            request = AttributeDict(
                name=headers.get("task"), chord=None, root_id=headers.get("root_id"),
                correlation_id=message.properties.get("correlation_id", task_id),
                reply_to=reply_to, errbacks=None, ignore_result=False,
                traceparent=headers.get("traceparent"),  # the reply joins the caller's trace
            )
            try:
                self.app.backend.mark_as_failure(task_id, error, request=request)
            except Exception as exc:  # the result is best effort; the message is safe
                logger.error("could not send the error for %s to its caller: %s", task_id, exc)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"cannot decode body ({message.content_type}): {exc}", exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "not a Celery task message (no task name)", None)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (message.headers or {}).get("task", "?")
        self._dead_letter(message, f"unknown task {name!r} on this worker",
                          NotRegistered(name))

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"invalid task message: {exc}", exc)


def _reason(text: str) -> str:
    """The dead-letter reason a log line stands for, as metrics label it."""
    for prefix, reason in (("cannot decode", "undecodable"), ("not a Celery", "not_a_task"),
                           ("unknown task", "unknown_task")):
        if text.startswith(prefix):
            return reason
    return "invalid"
