"""Passwords never appear in output, logs, errors or banners, even with special characters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from harness.processes import CONSUMER_DIR, Worker, clean_env, run_producer
from tests.conftest import Broker
from tests.test_broker_unreachable import closed_port

USER, PASSWORD = "ct_secret_user", "S3cr3t:p@ss/w%rd?#&x"


@pytest.fixture
def secret_env(broker: Broker, broker_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A RabbitMQ user whose password has URL-special characters."""
    broker.rabbitmqctl("delete_user", USER, check=False)
    broker.rabbitmqctl("add_user", USER, PASSWORD)
    broker.rabbitmqctl("set_permissions", "-p", broker.vhost, USER, ".*", ".*", ".*")
    yield {**broker_env, "RABBITMQ_USER": USER, "RABBITMQ_PASSWORD": PASSWORD}
    broker.rabbitmqctl("delete_user", USER)


def assert_no_password(text: str) -> None:
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)):
        assert form not in text


def test_the_password_appears_nowhere(
    start_worker: Callable[..., Worker], secret_env: dict[str, str]
) -> None:
    worker = start_worker("unique_magic_task", env=secret_env, extra_args=("--loglevel=debug",))
    outputs = [
        run_producer("unique_magic_task", "1", "2", "3", env=secret_env),
        run_producer("unique_magic_task", "1", "2", "3", "--json", env=secret_env),
        run_producer("unique_magic_task", "1", "2", "3", "--count", "3", "--json",
                     env=secret_env),
        run_producer("--list", "--json", env=secret_env),
        run_producer("unique_magic_task", "1", "2", env=secret_env),  # bad arguments
        run_producer("divide", "1", "2", "--timeout", "0.5", env=secret_env),  # timeout
        run_producer("divide", "1", "2", env={**secret_env, "RABBITMQ_PORT": str(closed_port()),
                                             "BROKER_CONNECT_TIMEOUT": "1"}),
        run_producer("divide", "1", "2", env={**secret_env, "RABBITMQ_PASSWORD": PASSWORD + "x",
                                             "BROKER_CONNECT_TIMEOUT": "1"}),  # bad password
        subprocess.run([sys.executable, "-m", "consumer", "--list"], cwd=CONSUMER_DIR,
                       env=clean_env(secret_env), capture_output=True, text=True, timeout=60),
    ]
    assert outputs[0].stdout.strip() == "6"  # the credentials work
    assert [o.returncode for o in outputs[4:8]] == [3, 6, 5, 5]
    for out in outputs:
        assert_no_password(out.stdout + out.stderr)
    worker.stop()
    assert "ct_secret_user:**@" in worker.log  # the banner names the user, masks the password
    assert_no_password(worker.log)
