"""`ContractRequest`: how a worker settles a message whose task hit its hard time limit,
or that it stopped when it lost the broker.

Celery either acknowledges a timed-out message (it is gone) or requeues it (it runs, and
times out, again and again until the queue's delivery limit). Here the caller gets the
`TimeLimitExceeded` error, and the message is rejected without requeue, so RabbitMQ moves
it to the task's dead-letter queue.

A worker that loses the broker stops its unacknowledged tasks: RabbitMQ delivers their
messages again. Celery marks such a request cancelled only after it has sent a RETRY
state, which fails while the broker is away; the stopped task then counted as revoked,
and its caller got `TaskRevokedError: terminated` although the task was about to run
again. Here the request is marked cancelled first.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request


class ContractRequest(Request):
    """A Celery request that dead-letters, rather than requeues, a hard-timed-out task."""

    _timed_out = False

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._timed_out = True
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        exc = exc_info.exception
        if isinstance(exc, TimeLimitExceeded) or isinstance(
            getattr(exc, "exc", None), TimeLimitExceeded  # billiard's ExceptionWithTraceback
        ):
            self._timed_out = True
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _announce_cancelled(self, emit_retry: bool = True) -> None:
        self._already_cancelled = True  # before the RETRY state, which may not get through
        super()._announce_cancelled(emit_retry=emit_retry)

    def reject(self, requeue: bool = False) -> None:
        super().reject(requeue=requeue and not self._timed_out)
