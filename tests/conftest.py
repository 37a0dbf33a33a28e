"""Harness fixtures: a real RabbitMQ (its own vhost), real workers, queues cleaned up.

Without a reachable broker these tests skip with the reason; with CI set they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu import Connection

from celery_tasks.topology import dead_letter_name, task_queue
from harness.processes import Worker, stop_all

TASK_NAMES = ("unique_magic_task", "count_primes", "sleep_echo", "divide")
HOST, PORT = "127.0.0.1", 5672
TEST_VHOST = "celery_tasks_test"


def _make_vhost() -> str:
    """A vhost of our own, so a developer's running workers never see test tasks."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return "/"
    for args in (["add_vhost", TEST_VHOST],
                 ["set_permissions", "-p", TEST_VHOST, "guest", ".*", ".*", ".*"]):
        subprocess.run([ctl, *args], capture_output=True, timeout=60)
    return TEST_VHOST


@pytest.fixture(scope="session")
def broker_env() -> dict[str, str]:
    """Settings for producer and workers, pointing at the local RabbitMQ."""
    probe = Connection(f"amqp://guest:guest@{HOST}:{PORT}//", connect_timeout=3)
    try:
        probe.ensure_connection(max_retries=2, interval_start=0.5)
    except Exception as exc:  # any failure means: no usable broker here
        reason = f"RabbitMQ not reachable at {HOST}:{PORT}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
        pytest.skip(reason)
    finally:
        probe.release()
    return {
        "RABBITMQ_HOST": HOST,
        "RABBITMQ_PORT": str(PORT),
        "RABBITMQ_USER": "guest",
        "RABBITMQ_PASSWORD": "guest",
        "RABBITMQ_VHOST": _make_vhost(),
        "CELERY_TASKS_ENV_FILE": "",
        "BROKER_CONNECT_TIMEOUT": "10",
    }


class Broker:
    """Direct access to the test vhost: queue depths, declarations, clean-up."""

    def __init__(self, env: dict[str, str]) -> None:
        self.vhost = env["RABBITMQ_VHOST"]

    def connection(self) -> Connection:
        """A new connection for each use: the broker may have restarted in between."""
        return Connection(hostname=HOST, port=PORT, userid="guest", password="guest",
                          virtual_host=self.vhost)

    def declare(self, name: str) -> None:
        """Declare a task's queue exactly as the workers do, so its depth can be read."""
        with self.connection() as conn, conn.channel() as channel:
            task_queue(name)(channel).declare()

    def depth(self, name: str) -> int | None:
        """Messages ready in queue `name`, or None if it does not exist."""
        try:
            with self.connection() as conn, conn.channel() as channel:
                return int(channel.queue_declare(name, passive=True).message_count)
        except Exception as exc:
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return None
            raise

    def consumers(self, name: str) -> int:
        """Consumers of queue `name` (0 if it does not exist yet)."""
        try:
            with self.connection() as conn, conn.channel() as channel:
                return int(channel.queue_declare(name, passive=True).consumer_count)
        except Exception as exc:
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return 0
            raise

    def delete_task_queues(self, names: tuple[str, ...] = TASK_NAMES) -> None:
        """Delete the tasks' queues, dead-letter queues and exchanges."""
        with self.connection() as conn, conn.channel() as channel:
            for name in names:
                channel.queue_delete(name)
                channel.queue_delete(dead_letter_name(name))
                channel.exchange_delete(name)


@pytest.fixture
def broker(broker_env: dict[str, str]) -> Iterator[Broker]:
    """The test vhost with every task queue deleted before and after the test."""
    b = Broker(broker_env)
    b.delete_task_queues()
    yield b
    b.delete_task_queues()


@pytest.fixture
def start_worker(
    broker: Broker, broker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start real `python -m consumer` workers; every one is stopped at teardown."""
    started: list[Worker] = []

    def start(task: str, env: dict[str, str] | None = None, **kwargs: object) -> Worker:
        worker = Worker(task, env or broker_env, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker.start()

    yield start
    stop_all(started)
