"""A queue already declared with other arguments (406 PRECONDITION_FAILED): a clear error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from kombu import Queue

from harness.processes import CONSUMER_DIR, clean_env, run_producer
from tests.conftest import Broker


def test_a_queue_declared_differently_is_a_clear_error_for_worker_and_producer(
    broker: Broker, broker_env: dict[str, str], record: Callable[..., None],
) -> None:
    with broker.connection() as conn, conn.channel() as channel:
        Queue("divide", durable=True, queue_arguments={"x-queue-type": "classic"})(
            channel).declare()

    worker = subprocess.run([sys.executable, "-m", "consumer", "divide"], cwd=CONSUMER_DIR,
                            env=clean_env(broker_env), capture_output=True, text=True,
                            timeout=60)
    assert worker.returncode == 10
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 1, worker.stderr
    assert "queue 'divide' exists with other arguments" in lines[0]
    assert "inequivalent arg" in lines[0]  # RabbitMQ's own words: which argument differs

    producer = run_producer("divide", "1", "2", env=broker_env)
    assert producer.returncode == 10
    assert "queue 'divide' exists with other arguments" in producer.stderr
    assert broker.depth("divide") == 0  # nothing was published into the foreign queue
    record(0, 0, 0, "406 on declare: exit 10 naming the queue and the differing argument")
