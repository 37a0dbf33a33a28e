"""`ContractConsumer`: a worker's message intake that never drops a message it cannot run.

Celery acknowledges (drops) a message whose body cannot be decoded, including pickle
content when only JSON is accepted, and logs each bad message over many lines. Here every
such message — undecodable, refused content type, unknown task, invalid headers — is
rejected into the task's dead-letter queue with one log line, and a caller waiting on a
result gets the error. The worker keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import NotRegistered
from celery.utils.collections import AttributeDict
from celery.worker.consumer import Consumer

logger = logging.getLogger("celery_tasks.worker")


class ContractConsumer(Consumer):
    """Rejects every message it cannot run into the dead-letter queue, with one log line."""

    def _dead_letter(self, message: Any, reason: str, error: BaseException | None) -> None:
        headers = message.headers or {}
        queue = (message.delivery_info or {}).get("routing_key", "?")
        logger.error("dead-lettered a message from queue %s (task %s, id %s): %s", queue,
                     headers.get("task", "?"), headers.get("id", "?"), reason)
        message.reject_log_error(logger, self.connection_errors)
        task_id, reply_to = headers.get("id"), message.properties.get("reply_to")
        if task_id and reply_to and error is not None:
            request = AttributeDict(
                name=headers.get("task"), chord=None, root_id=headers.get("root_id"),
                correlation_id=message.properties.get("correlation_id", task_id),
                reply_to=reply_to, errbacks=None, ignore_result=False,
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
