"""Malformed messages on a task's queue: each is dead-lettered with one log line, pickle is
never run, and the worker keeps serving good tasks."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kombu import Producer

from harness.processes import Worker, run_producer
from tests.conftest import Broker, wait_for_depth

QUEUE = "unique_magic_task"


def task_headers(task: str = QUEUE, **extra: Any) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
            "group": None, "retries": 0, "argsrepr": "", "kwargsrepr": "", **extra}


def publish(broker: Broker, body: bytes, content_type: str, headers: dict[str, Any]) -> None:
    with broker.connection() as conn:
        Producer(conn.default_channel).publish(
            body, exchange="", routing_key=QUEUE, content_type=content_type,
            content_encoding="binary" if "json" not in content_type else "utf-8",
            headers=headers, serializer=None, delivery_mode=2)


MALFORMED = {
    "not JSON": (b"{this is not json", "application/json", task_headers()),
    "pickle content": (pickle.dumps(((1, 2, 3), {}, {})), "application/x-python-serialize",
                       task_headers()),
    "missing headers": (b'[[1, 2, 3], {}, {}]', "application/json", {}),
    "unknown task name": (b'[[1, 2, 3], {}, {}]', "application/json",
                          task_headers(task="no_such_task")),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_message_is_dead_lettered_and_the_worker_keeps_serving(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker,
    record: Callable[..., None], kind: str,
) -> None:
    worker = start_worker(QUEUE)
    body, content_type, headers = MALFORMED[kind]
    publish(broker, body, content_type, headers)
    assert wait_for_depth(broker, f"{QUEUE}.dead", 1) == 1
    lines = [line for line in worker.log.splitlines() if "dead-lettered a message" in line]
    assert len(lines) == 1, worker.log
    assert "Traceback" not in worker.log
    out = run_producer(QUEUE, "1", "2", "3", env=broker_env)  # still serving
    assert (out.returncode, out.stdout.strip()) == (0, "6")
    assert not any(h == headers.get("id") for _, h in worker.received())  # never run
    record(1, 0, 0, f"{kind}: dead-lettered, one log line; worker kept serving")


def test_pickle_is_refused_and_never_executed(
    start_worker: Callable[..., Worker], broker: Broker, record: Callable[..., None],
) -> None:
    worker = start_worker(QUEUE)
    body, content_type, headers = MALFORMED["pickle content"]
    publish(broker, body, content_type, headers)
    assert wait_for_depth(broker, f"{QUEUE}.dead", 1) == 1
    assert "application/x-python-serialize" in worker.log
    assert f"Task {QUEUE}[{headers['id']}] succeeded" not in worker.log
    record(1, 0, 0, "pickle refused (ContentDisallowed), dead-lettered")


def test_a_raw_message_over_rabbitmqs_limit_is_refused_by_the_broker(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker,
    record: Callable[..., None],
) -> None:
    start_worker(QUEUE)
    body = b"x" * (129 * 1024 * 1024)
    with broker.connection() as conn:
        conn.default_channel.confirm_select()
        with pytest.raises(Exception, match=r"(?i)max size|PRECONDITION|406"):
            publish_on(conn, body)
    assert broker.depth(QUEUE) == 0
    out = run_producer(QUEUE, "1", "2", "3", env=broker_env)
    assert (out.returncode, out.stdout.strip()) == (0, "6")
    record(1, 0, 0, "129 MiB raw message: refused by RabbitMQ; worker kept serving")


def publish_on(conn: Any, body: bytes) -> None:
    Producer(conn.default_channel).publish(body, exchange="", routing_key=QUEUE,
                                           content_type="application/json",
                                           content_encoding="utf-8", headers=task_headers(),
                                           serializer=None)
    conn.drain_events(timeout=5)
