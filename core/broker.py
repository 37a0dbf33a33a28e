"""Reaching the broker within a deadline, with errors that name where it was looked for."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.exceptions import ImproperlyConfigured
from kombu.utils.url import maybe_sanitize_url

from .errors import BrokerUnreachable, ConfigError
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
        where = ("CELERY_BROKER_URL" if settings.broker_url_given
                 else "RABBITMQ_HOST, RABBITMQ_PORT and the credentials")
        raise BrokerUnreachable(
            f"cannot reach the broker at {settings.broker_address} within {deadline:g} s "
            f"({cause}): start RabbitMQ or check {where}"
        ) from None
    finally:
        conn.release()


def check_result_backend(app: Celery) -> None:
    """Reach a durable result backend (Redis, a database) once, before anything is sent.

    `rpc://` needs nothing more than the broker. Raises `BrokerUnreachable` (exit 5) naming
    the backend without its password, so no task is published whose result has nowhere to go.
    """
    url = maybe_sanitize_url(str(app.conf.result_backend))
    backend = load_result_backend(app)
    try:
        if hasattr(backend, "ResultSession"):  # the database backend (SQLAlchemy)
            from sqlalchemy import text

            session = backend.ResultSession()
            try:
                session.execute(text("SELECT 1"))
            finally:
                session.close()
        elif callable(getattr(getattr(backend, "client", None), "ping", None)):  # Redis
            backend.client.ping()
    except ImportError as exc:  # SQLAlchemy loads the database driver on first use
        raise _driver_missing(url, exc) from None
    except Exception as exc:
        raise _backend_unreachable(url, exc) from None


#: The extra of celery-tasks that installs a result backend's driver, by URL scheme.
EXTRAS = {"redis": "redis", "rediss": "redis", "db": "postgres"}


def load_result_backend(app: Celery) -> Any:
    """`app`'s result backend, loaded: a driver that is not installed is a ConfigError
    naming the extra of celery-tasks that installs it (exit 7)."""
    url = maybe_sanitize_url(str(app.conf.result_backend))
    try:
        return app.backend  # the database backend connects here already
    except (ImportError, ImproperlyConfigured) as exc:
        raise _driver_missing(url, exc) from None
    except Exception as exc:
        raise _backend_unreachable(url, exc) from None


def _driver_missing(url: str, exc: Exception) -> ConfigError:
    extra = EXTRAS.get(url.split("://", 1)[0].split("+", 1)[0].lower())
    cause = (str(exc) or type(exc).__name__).splitlines()[0]
    install = f": install it with pip install 'celery-tasks[{extra}]'" if extra else ""
    return ConfigError(f"CELERY_RESULT_BACKEND {url}: cannot load its driver ({cause}){install}")


def _backend_unreachable(url: str, exc: Exception) -> BrokerUnreachable:
    cause = (str(exc) or type(exc).__name__).splitlines()[0]
    return BrokerUnreachable(
        f"cannot reach the result backend {url} ({cause}): start it or fix CELERY_RESULT_BACKEND")
