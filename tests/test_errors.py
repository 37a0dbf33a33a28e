"""How RabbitMQ's refusals read, whichever client raised them (py-amqp, kombu)."""

from __future__ import annotations

import pytest
from amqp.exceptions import (
    AccessRefused,
    ChannelError,
    NotFound,
    PreconditionFailed,
    RecoverableConnectionError,
    error_for_code,
)
from kombu.exceptions import OperationalError

from celery_tasks.core.errors import ConfigError, message_refused, refusal


@pytest.mark.parametrize(("exc", "code", "text"), [
    (AccessRefused("ACCESS_REFUSED - write access to exchange 'x' refused", (60, 40)), 403,
     "ACCESS_REFUSED - write access to exchange 'x' refused"),
    (NotFound("NOT_FOUND - no queue 'q'"), 404, "NOT_FOUND - no queue 'q'"),
    (PreconditionFailed("PRECONDITION_FAILED - inequivalent arg\nsecond line"), 406,
     "PRECONDITION_FAILED - inequivalent arg"),
    (OperationalError("[Errno 111] Connection refused"), None, "[Errno 111] Connection refused"),
    (RecoverableConnectionError("connection already closed"), None,
     "connection already closed"),
    (error_for_code(599, "SOME_NEW_REFUSAL - x", (60, 40), ChannelError), 599,
     "SOME_NEW_REFUSAL - x"),
    (ValueError(), None, "ValueError"),
])
def test_a_refusal_is_rabbitmqs_code_and_one_line(
    exc: BaseException, code: int | None, text: str
) -> None:
    assert refusal(exc) == (code, text)


def test_only_a_message_over_max_size_is_the_setting_to_fix() -> None:
    over = PreconditionFailed("PRECONDITION_FAILED - message size 20971520 is larger than "
                              "configured max size 16777216")
    error = message_refused(over, "a divide call")
    assert isinstance(error, ConfigError) and "CELERY_TASKS_MAX_MESSAGE_SIZE" in str(error)
    assert "larger than configured max size 16777216" in str(error)
    assert message_refused(AccessRefused("ACCESS_REFUSED - no"), "a divide call") is None
