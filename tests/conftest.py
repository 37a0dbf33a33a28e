"""Harness fixtures: a real RabbitMQ (its own vhost), real workers, queues cleaned up.

The services come from harness.services (HARNESS_* variables, 127.0.0.1, or containers).
Without them these tests skip with the reason; with CI set they fail instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from celery_tasks.core.topology import dead_letter_name, task_queue
from celery_tasks.tasks import CONTRACTS
from harness.processes import Worker, kill_all
from harness.services import RabbitMQ, Services, ServiceUnavailable, running
from harness.services import docker_client as services_docker_client

TASK_NAMES = tuple(CONTRACTS)  # every contract of celery_tasks/tasks.py
TEST_VHOST = "celery_tasks_test"


def fail_or_skip(reason: str) -> None:
    """Skip with the reason; with CI set, fail instead (a missing service is a defect)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """RabbitMQ, Redis and PostgreSQL for this run (harness.services: the HARNESS_*
    variables, else 127.0.0.1, else containers that are removed at the end)."""
    try:
        with running() as found:
            yield found
    except ServiceUnavailable as exc:
        fail_or_skip(str(exc))


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The Docker engine (DOCKER_HOST, or `make engine`'s) with the base images at hand."""
    import docker  # the Docker SDK for Python

    try:
        client = services_docker_client()
    except ServiceUnavailable as exc:  # no engine: say why
        fail_or_skip(str(exc))
    for image in (os.environ.get("PYTHON_IMAGE", "python:3.11-slim"),
                  os.environ.get("RABBITMQ_IMAGE", "rabbitmq:4.3-management")):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            fail_or_skip(f"base image {image} is missing (run 'make engine')")
    yield client
    client.close()


@pytest.fixture(scope="session")
def rabbitmq(services: Services) -> RabbitMQ:
    """The RabbitMQ node of this run, with a vhost of its own for the tests."""
    node = services.rabbitmq
    if not node.answers():
        fail_or_skip(f"RabbitMQ not reachable at {node.address} ({node.origin})")
    return node


def _make_vhost(node: RabbitMQ) -> str:
    """A vhost of our own, so a developer's running workers never see test tasks."""
    for args in (["add_vhost", TEST_VHOST],
                 ["set_permissions", "-p", TEST_VHOST, node.user, ".*", ".*", ".*"]):
        try:
            node.rabbitmqctl(*args, check=False)
        except OSError as exc:
            fail_or_skip(f"the RabbitMQ control command {' '.join(node.ctl)} fails: {exc} "
                         "(set HARNESS_RABBITMQCTL)")
    return TEST_VHOST


@pytest.fixture(scope="session")
def broker_env(rabbitmq: RabbitMQ) -> dict[str, str]:
    """Settings for producer and workers, pointing at the run's RabbitMQ and test vhost."""
    return {
        **rabbitmq.settings(_make_vhost(rabbitmq)),
        "CELERY_TASKS_ENV_FILE": "",
        "BROKER_CONNECT_TIMEOUT": "10",
    }


class Broker:
    """Direct access to the test vhost: queue depths, declarations, clean-up."""

    def __init__(self, node: RabbitMQ, env: dict[str, str]) -> None:
        self.node, self.vhost = node, env["RABBITMQ_VHOST"]

    def connection(self) -> Connection:
        """A new connection for each use: the broker may have restarted in between."""
        return Connection(hostname=self.node.host, port=self.node.port, userid=self.node.user,
                          password=self.node.password, virtual_host=self.vhost)

    def rabbitmqctl(self, *args: str, check: bool = True) -> str:
        """Run the node's control command (HARNESS_RABBITMQCTL); its output."""
        return self.node.rabbitmqctl(*args, check=check).stdout

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
def broker(rabbitmq: RabbitMQ, broker_env: dict[str, str]) -> Iterator[Broker]:
    """The test vhost with every task queue deleted before and after the test."""
    b = Broker(rabbitmq, broker_env)
    b.delete_task_queues()
    yield b
    b.delete_task_queues()


def wait_for_depth(broker: Broker, queue: str, expected: int, timeout: float = 15) -> int | None:
    """Poll a queue's depth until it is `expected` (dead-lettering is asynchronous)."""
    deadline = time.monotonic() + timeout
    depth = broker.depth(queue)
    while depth != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        depth = broker.depth(queue)
    return depth


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
    kill_all(started)
