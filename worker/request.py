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

Each settled message is counted here, in the worker's main process, when metrics are on,
and a message rejected without requeue is traced as dead-lettered (worker/observe.py).
"""

from __future__ import annotations

from time import time
from typing import Any

from billiard.exceptions import Terminated
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from celery.worker.request import Request

from ..core.errors import outcome_of, unwrapped
from . import observe


class ContractRequest(Request):
    """A Celery request that dead-letters, rather than requeues, a hard-timed-out task."""

    _timed_out = False
    _outcome = "failure"
    _counted = False

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        metrics = observe.metrics()
        if metrics is not None and self.time_start is not None:
            metrics.started(self._request_dict, self.time_start)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._timed_out = True
            self._settled("timeout")
        super().on_timeout(soft, timeout)

    def acknowledge(self) -> None:
        # Late acknowledgement: a task that ran without error (Celery's worker replaces
        # on_success with its own, which acknowledges; a failure or retry counted first).
        self._settled("success")
        super().acknowledge()

    def on_retry(self, exc_info: Any) -> None:
        self._settled("retry")
        super().on_retry(exc_info)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        inner = unwrapped(exc_info.exception)
        if isinstance(inner, TimeLimitExceeded):
            self._timed_out = True
        outcome = self._outcome_of(inner)
        if outcome is not None:
            self._settled(outcome)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _outcome_of(self, exc: BaseException) -> str | None:
        """What a failed run counts as; None for what is counted elsewhere or not at all: a
        retry (on_retry), a run stopped by a revoke (_announce_revoked) or by a lost broker
        (_announce_cancelled), a task that asked to be ignored or requeued."""
        stopped = self._already_cancelled or self._already_revoked
        if isinstance(exc, (Retry, Terminated, Ignore)) or (
                stopped and isinstance(exc, (SystemExit, KeyboardInterrupt))):
            return None
        if isinstance(exc, Reject):
            return None if exc.requeue else "rejected"
        return outcome_of(exc)

    def _settled(self, outcome: str) -> None:
        """Count the message's outcome, once (a hard time limit is also a lost worker)."""
        if self._counted:
            return
        self._counted, self._outcome = True, outcome
        metrics = observe.metrics()
        if metrics is not None:
            # From the pool's start to now: the run, and the result sent back.
            runtime = None if self.time_start is None else max(0.0, time() - self.time_start)
            metrics.settled(outcome, self._request_dict, runtime)

    def _announce_revoked(self, *args: Any, **kwargs: Any) -> None:
        self._settled("revoked")  # acknowledged, never run
        super()._announce_revoked(*args, **kwargs)

    def _announce_cancelled(self, emit_retry: bool = True) -> None:
        # A running task stopped because the worker lost the broker (or a shutdown cancelled
        # it): unacknowledged, its message comes again, and that run is counted on its own.
        self._settled("interrupted")
        self._already_cancelled = True  # before the RETRY state, which may not get through
        super()._announce_cancelled(emit_retry=emit_retry)

    def reject(self, requeue: bool = False) -> None:
        requeue = requeue and not self._timed_out
        if not requeue and not self.acknowledged and self.app.conf.get(
                "celery_tasks_dead_letter", True):  # (the embedded broker drops it)
            observe.dead_lettered(self.name, self.id, self._request_dict, self._outcome)
        super().reject(requeue=requeue)

