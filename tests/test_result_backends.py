"""Durable result backends (Redis, PostgreSQL), chosen by CELERY_RESULT_BACKEND.

With rpc:// a result reaches only the process that sent the task, and is lost if that
process is gone; with a durable backend, any process can collect it later by task id.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from harness.processes import Worker, run_producer
from harness.services import Services, listening
from tests.conftest import Broker


@pytest.fixture(params=["postgresql", "redis"])
def backend_env(request: pytest.FixtureRequest, services: Services,
                broker_env: dict[str, str]) -> dict[str, str]:
    url = services.redis(15) if request.param == "redis" else services.postgres_backend
    where = urlsplit(services.redis_url if request.param == "redis" else services.postgres_url)
    if not listening(where.hostname or "", where.port or 0):
        pytest.fail(f"{request.param} is not reachable at {where.netloc}")
    return {**broker_env, "CELERY_RESULT_BACKEND": url}


def test_a_result_is_collected_later_by_another_process(
    start_worker: Callable[..., Worker], backend_env: dict[str, str]
) -> None:
    sent = run_producer("unique_magic_task", "1", "2", "3", "--no-wait", env=backend_env)
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    start_worker("unique_magic_task", env=backend_env)  # the worker starts after the sender left
    fetched = run_producer("unique_magic_task", "--result", task_id, env=backend_env)
    assert (fetched.returncode, fetched.stdout.strip()) == (0, "6"), fetched.stderr


def test_many_calls_sent_without_waiting_are_each_collected_later(
    start_worker: Callable[..., Worker], backend_env: dict[str, str], broker: Broker
) -> None:
    """`--no-wait --count` publishes with batched confirms; every id printed is queued."""
    broker.delete_task_queues(("divide",))
    sent = run_producer("divide", "9", "3", "--no-wait", "--count", "50", env=backend_env)
    assert sent.returncode == 0, sent.stderr
    ids = sent.stdout.split()
    assert len(set(ids)) == 50
    assert broker.depth("divide") == 50  # confirmed, so queued: all of them
    start_worker("divide", env=backend_env)
    for task_id in (ids[0], ids[-1]):
        fetched = run_producer("divide", "--result", task_id, env=backend_env)
        assert (fetched.returncode, fetched.stdout.strip()) == (0, "3.0"), fetched.stderr


def test_round_trip_and_errors_through_a_durable_backend(
    start_worker: Callable[..., Worker], backend_env: dict[str, str]
) -> None:
    start_worker("divide", env=backend_env)
    assert run_producer("divide", "7", "2", env=backend_env).stdout.strip() == "3.5"
    out = run_producer("divide", "1", "0", env=backend_env)
    assert out.returncode == 1
    assert "ZeroDivisionError: float division by zero" in out.stderr
    batch = run_producer("divide", "1", "4", "--count", "20", env=backend_env)
    assert batch.returncode == 0, batch.stderr
    assert "20 succeeded" in batch.stdout


def test_result_lookup_needs_a_durable_backend(broker_env: dict[str, str]) -> None:
    out = run_producer("divide", "--result", "some-id", env=broker_env)
    assert out.returncode == 7
    assert "--result needs a durable result backend" in out.stderr
