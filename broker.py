"""Reaching the broker within a deadline, with errors that name where it was looked for."""

from __future__ import annotations

from celery import Celery

from .errors import BrokerUnreachable
from .settings import Settings


def wait_for_broker(app: Celery, settings: Settings, timeout: float | None = None) -> None:
    """Connect to `app`'s broker, retrying for up to `timeout` seconds (default: the setting).

    Raises `BrokerUnreachable` with host:port and the cause, never the password.
    """
    deadline = settings.broker_connect_timeout if timeout is None else timeout
    conn = app.connection_for_write()
    try:
        conn.ensure_connection(
            max_retries=None, interval_start=0.2, interval_step=0.5, interval_max=2.0,
            timeout=deadline,
        )
    except Exception as exc:  # kombu raises OperationalError, socket and auth errors
        cause = settings.redact(str(exc) or type(exc).__name__)
        raise BrokerUnreachable(
            f"cannot reach the broker at {settings.broker_address} within {deadline:g} s "
            f"({cause}): start RabbitMQ or check RABBITMQ_HOST, RABBITMQ_PORT and the credentials"
        ) from None
    finally:
        conn.release()
