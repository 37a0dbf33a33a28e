"""Every bad input is one line on stderr with its own exit code, and publishes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from harness.processes import Worker, run_producer
from tests.conftest import TASK_NAMES, Broker

BAD_INPUTS = [
    (["unique_magic_task", "1", "2"], 3),  # missing argument
    (["unique_magic_task", "1", "2", "3", "4"], 3),  # extra argument
    (["unique_magic_task", "1", "2", "x"], 3),  # wrong type
    (["divide", "1", "2", "--count", "20", "--bogus"], 2),  # unknown option
    (["no_such_task", "1"], 4),  # unknown task
    (["count_primes", "10", "--count", "-3"], 2),  # bad option value
]


@pytest.mark.parametrize(("args", "code"), BAD_INPUTS)
def test_bad_input_publishes_nothing(broker: Broker, broker_env: dict[str, str],
                                     args: list[str], code: int) -> None:
    for name in TASK_NAMES:
        broker.declare(name)
    out = run_producer(*args, env=broker_env)
    assert out.returncode == code
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert {name: broker.depth(name) for name in TASK_NAMES} == dict.fromkeys(TASK_NAMES, 0)


@pytest.mark.parametrize(("backend", "code", "message"), [
    ("bogus://user:s3cret@host/0", 7, "CELERY_RESULT_BACKEND must be a URL such as"),
    ("db+mysql://user:s3cret@127.0.0.1/db", 7, "cannot load its driver"),
    ("redis://:s3cret@127.0.0.1:1/0", 5, "cannot reach the result backend"),
    ("db+postgresql+psycopg://user:s3cret@127.0.0.1:1/db", 5,
     "cannot reach the result backend"),
])
@pytest.mark.parametrize("count", ["1", "5"])
def test_a_bad_result_backend_is_one_line_and_publishes_nothing(
        broker: Broker, broker_env: dict[str, str], backend: str, code: int, message: str,
        count: str) -> None:
    broker.declare("divide")
    out = run_producer("divide", "1", "2", "--count", count, "--timeout", "5",
                       env={**broker_env, "CELERY_RESULT_BACKEND": backend})
    assert out.returncode == code, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "s3cret" not in out.stderr
    assert broker.depth("divide") == 0


def test_the_depth_check_sees_a_published_task(broker: Broker, broker_env: dict[str, str]) -> None:
    """The control for the test above: a good call with no worker leaves one message."""
    broker.declare("divide")
    out = run_producer("divide", "1", "2", "--timeout", "0.5", env=broker_env)
    assert out.returncode == 6
    assert broker.depth("divide") == 1


@contextmanager
def limited_user(broker: Broker, broker_env: dict[str, str], configure: str,
                 write: str) -> Iterator[dict]:
    """Settings for a user with these permissions (and every read permission)."""
    broker.rabbitmqctl("-q", "delete_user", "celery_tasks_limited", check=False)
    broker.rabbitmqctl("-q", "add_user", "celery_tasks_limited", "limited-pw")
    try:
        broker.rabbitmqctl("-q", "set_permissions", "-p", broker.vhost, "celery_tasks_limited",
                           configure, write, ".*")
        yield {**broker_env, "RABBITMQ_USER": "celery_tasks_limited",
               "RABBITMQ_PASSWORD": "limited-pw"}
    finally:
        broker.rabbitmqctl("-q", "delete_user", "celery_tasks_limited", check=False)


def test_a_user_without_configure_permission_gets_one_line_and_exit_7(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    """RabbitMQ refuses to declare the task's queues (403) and no worker has declared them
    yet: a setting to fix, not a traceback."""
    with limited_user(broker, broker_env, configure="^$", write=".*") as env:
        out = run_producer("divide", "1", "2", env=env)
    assert out.returncode == 7, out.stderr
    assert out.stderr.startswith("error: RabbitMQ refused to declare queue 'divide' ")
    assert "it does not exist yet: start a worker for its task first" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "ACCESS_REFUSED" in out.stderr


def test_a_user_without_configure_permission_uses_the_queues_its_workers_declared(
    start_worker: Callable[..., Worker], broker: Broker, broker_env: dict[str, str]
) -> None:
    """A producer's role need not declare (nor so delete) task queues: once a worker has
    declared them, its single calls and batches go through."""
    start_worker("divide")
    with limited_user(broker, broker_env, configure=r"^celery_tasks\.reply\.",
                      write=".*") as env:
        single = run_producer("divide", "1", "2", env=env)
        batch = run_producer("divide", "1", "2", "--count", "20", env=env)
    assert (single.returncode, single.stdout.strip()) == (0, "0.5"), single.stderr
    assert batch.returncode == 0 and "20 succeeded" in batch.stdout, batch.stderr


def test_a_batch_by_a_user_who_may_not_write_to_the_default_exchange_uses_the_tasks(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    """The batch path publishes by the default exchange, which reaches every queue: a user
    kept off it publishes by the task's exchange, as Celery does."""
    with limited_user(broker, broker_env, configure=".*", write=r"^(?!amq\.default$).*") as env:
        out = run_producer("divide", "1", "2", "--count", "20", "--no-wait", env=env)
    assert out.returncode == 0, out.stderr
    assert broker.depth("divide") == 20  # each once


def test_a_batch_whose_reply_queue_is_refused_is_one_line_and_exit_7(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    """RabbitMQ closes the channel (403) on the batch's reply queue: one line naming the
    permissions, not a traceback, and nothing published."""
    with limited_user(broker, broker_env, configure=r"^(?!celery_tasks\.reply\.).*",
                      write=".*") as env:
        out = run_producer("divide", "1", "2", "--count", "20", env=env)
    assert out.returncode == 7, out.stderr
    assert out.stderr.startswith("error: RabbitMQ refused access while sending divide tasks")
    assert "on the reply queues celery_tasks.reply.*" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "ACCESS_REFUSED" in out.stderr
    assert broker.depth("divide") == 0
