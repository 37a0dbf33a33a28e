"""`ContractRequest`: how a worker settles a message whose task hit its hard time limit.

Celery either acknowledges such a message (it is gone) or requeues it (it runs, and times
out, again and again). Here the caller gets the `TimeLimitExceeded` error, and the message
is rejected without requeue, so RabbitMQ moves it to the task's dead-letter queue.
"""

from __future__ import annotations

from celery.worker.request import Request


class ContractRequest(Request):
    """A Celery request that dead-letters, rather than requeues, a hard-timed-out task."""

    _timed_out = False

    def on_timeout(self, soft: bool, timeout: float) -> None:
        self._timed_out = not soft
        try:
            super().on_timeout(soft, timeout)
        finally:
            self._timed_out = False

    def reject(self, requeue: bool = False) -> None:
        super().reject(requeue=requeue and not self._timed_out)
