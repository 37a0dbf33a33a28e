"""Workers that die or are stopped in the middle of a batch lose no task."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from harness.compose import free_port
from harness.processes import PRODUCER_DIR, Worker, clean_env
from tests.test_telemetry import metrics, sample


def start_batch(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The producer script sending a batch, in the background; its --json summary at the end."""
    return subprocess.Popen([sys.executable, "-m", "producer", *args, "--json"],
                            cwd=PRODUCER_DIR, env=clean_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(batch: subprocess.Popen[str], timeout: float = 120) -> dict:
    out, err = batch.communicate(timeout=timeout)
    assert batch.returncode == 0, err
    return dict(json.loads(out))


def wait_received(worker: Worker, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(worker.received()) < count:
        assert time.monotonic() < deadline, worker.log
        time.sleep(0.05)


def wait_running(worker: Worker, port: int) -> None:
    """Until a pool process of `worker` (serving metrics on `port`) has started a task: its
    in-flight gauge (Celery's active requests) is 1 or more. A task only received may still
    sit in the pool's outbound buffer, which a warm shutdown drops (RabbitMQ delivers it
    again): a fault meant for a running task waits for this, not for "received"."""
    running = metrics(port, lambda found: sample(found, "celery_tasks_in_flight") >= 1)
    assert sample(running, "celery_tasks_in_flight") >= 1, worker.log


def test_sigkill_of_a_worker_mid_batch_loses_nothing(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    record: Callable[..., None],
) -> None:
    first = start_worker("sleep_echo", concurrency=2)
    batch = start_batch(broker_env, "sleep_echo", "0.3", "payload", "--count", "20",
                        "--timeout", "120")
    wait_received(first, 4)
    first.kill()  # the worker and its pool, at once, with tasks running and reserved
    second = start_worker("sleep_echo", concurrency=2)
    summary = finish(batch)
    lost = summary["count"] - summary["succeeded"]
    assert (summary["succeeded"], summary["failed"], summary["pending"]) == (20, 0, 0)
    assert len(second.received()) >= 1  # the killed worker's tasks were redelivered
    record(20, summary["succeeded"], lost, "SIGKILL mid-batch; redelivered to a new worker")


def test_sigterm_finishes_the_running_task_and_leaves_the_rest_queued(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    record: Callable[..., None],
) -> None:
    port = free_port()
    first = start_worker("sleep_echo", concurrency=1,
                         env={**broker_env, "CELERY_TASKS_METRICS_PORT": str(port)})
    batch = start_batch(broker_env, "sleep_echo", "1.5", "payload", "--count", "5",
                        "--timeout", "120")
    wait_running(first, port)
    first.signal(signal.SIGTERM)  # warm shutdown
    assert first.stop(timeout=30) == 0
    assert "succeeded" in first.log  # the running task was finished, not abandoned
    start_worker("sleep_echo", concurrency=2)
    summary = finish(batch)
    assert (summary["succeeded"], summary["failed"], summary["pending"]) == (5, 0, 0)
    record(5, summary["succeeded"], 5 - summary["succeeded"],
           "SIGTERM: warm shutdown finished its task; the rest ran on the next worker")
