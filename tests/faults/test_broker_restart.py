"""RabbitMQ restarted or down: queued and in-flight tasks survive, and whoever started while
it was down connects once it is back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from harness.compose import free_port
from harness.processes import PRODUCER_DIR, Worker, clean_env
from harness.services import RabbitMQ, Services
from tests.faults.test_crashes import finish, start_batch, wait_received, wait_running
from tests.test_telemetry import metrics, sample


@pytest.fixture
def rabbit(rabbitmq: RabbitMQ) -> Iterator[Callable[[str], None]]:
    """`rabbit("stop")` / `rabbit("start")`, by the node's control command
    (HARNESS_RABBITMQCTL); the broker is always running again afterwards."""

    def control(action: str) -> None:
        rabbitmq.rabbitmqctl(f"{action}_app")
        if action == "start":
            rabbitmq.rabbitmqctl("await_startup")

    yield control
    control("start")


def test_a_broker_restart_mid_batch_loses_no_task_nor_result_with_a_durable_backend(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], services: Services,
    rabbit: Callable[[str], None], record: Callable[..., None],
) -> None:
    backend = services.redis(15)
    env = {**broker_env, "CELERY_RESULT_BACKEND": backend, "BROKER_CONNECT_TIMEOUT": "60"}
    worker = start_worker("sleep_echo", env=env, concurrency=2)
    batch = start_batch(env, "sleep_echo", "0.2", "payload", "--count", "40",
                        "--timeout", "120")
    wait_received(worker, 6)
    rabbit("stop")  # queued messages wait on disk; in-flight ones were never acknowledged
    time.sleep(2)
    rabbit("start")
    summary = finish(batch, timeout=180)
    lost = summary["count"] - summary["succeeded"] - summary["failed"]
    record(40, summary["succeeded"], lost, f"stop_app/start_app mid-batch, results via {backend}")
    assert (summary["succeeded"], summary["failed"], summary["pending"]) == (40, 0, 0)


def test_a_broker_restart_mid_batch_with_rpc_results_loses_no_task(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    rabbit: Callable[[str], None], record: Callable[..., None],
) -> None:
    """A `--count` batch on rpc:// collects from its own durable reply queue (batch path).

    No task is lost (each one ran: its success is in the worker's log), and no result
    either: the reply queue and the result messages are durable, so every result comes
    back after the restart.
    """
    env = {**broker_env, "BROKER_CONNECT_TIMEOUT": "60"}
    worker = start_worker("sleep_echo", env=env, concurrency=2)
    batch = subprocess.Popen(
        [sys.executable, "-m", "producer", "sleep_echo", "0.2", "payload", "--count", "40",
         "--timeout", "120", "--json"], cwd=PRODUCER_DIR, env=clean_env(env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_received(worker, 6)
    rabbit("stop")
    time.sleep(2)
    rabbit("start")
    out, err = batch.communicate(timeout=120)
    summary = json.loads(out)
    ran = {task_id for task_id in re.findall(r"Task sleep_echo\[([0-9a-f-]+)\] succeeded",
                                               worker.log)}
    deadline = time.monotonic() + 30  # the worker may still be running the last ones
    while not set(summary["pending_ids"]) <= ran and time.monotonic() < deadline:
        time.sleep(0.5)
        ran = set(re.findall(r"Task sleep_echo\[([0-9a-f-]+)\] succeeded", worker.log))
    lost = len(set(summary["pending_ids"]) - ran)
    record(40, summary["succeeded"], lost,
           f"restart with rpc:// (batch path): {summary['pending']} results missing")
    assert lost == 0
    assert (summary["succeeded"], summary["failed"], summary["pending"]) == (40, 0, 0), err
    assert batch.returncode == 0, err


def test_producer_and_worker_started_while_the_broker_is_down_connect_when_it_is_up(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    rabbit: Callable[[str], None], record: Callable[..., None],
) -> None:
    env = {**broker_env, "BROKER_CONNECT_TIMEOUT": "60"}
    rabbit("stop")
    worker = Worker("unique_magic_task", env, __import__("pathlib").Path("/tmp"))
    producer = subprocess.Popen(
        [sys.executable, "-m", "producer", "unique_magic_task", "1", "2", "3"],
        cwd=PRODUCER_DIR, env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    worker.launch()
    try:
        time.sleep(3)
        assert producer.poll() is None and worker.process is not None
        assert worker.process.poll() is None  # both still waiting for the broker
        rabbit("start")
        worker.wait_ready(60)
        out, err = producer.communicate(timeout=90)
        assert (producer.returncode, out.strip()) == (0, "6"), err
    finally:
        worker.stop()
    record(1, 1, 0, "broker down at start, up within BROKER_CONNECT_TIMEOUT")


def test_a_broker_restart_during_a_single_call_loses_neither_task_nor_result(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    rabbit: Callable[[str], None], record: Callable[..., None],
) -> None:
    """One call (the single-call path) waits through a restart: its line connects again,
    does not publish the confirmed task twice, and takes the result from its durable reply
    queue."""
    env = {**broker_env, "BROKER_CONNECT_TIMEOUT": "60"}
    port = free_port()
    worker = start_worker("sleep_echo", env={**env, "CELERY_TASKS_METRICS_PORT": str(port)},
                          concurrency=2)
    call = subprocess.Popen(
        [sys.executable, "-m", "producer", "sleep_echo", "5", "payload", "--timeout", "90",
         "--json"], cwd=PRODUCER_DIR, env=clean_env(env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_running(worker, port)
    rabbit("stop")  # the task is running (5 s): its message is not acknowledged yet
    time.sleep(2)
    rabbit("start")
    out, err = call.communicate(timeout=120)
    ok = call.returncode == 0 and json.loads(out)["result"] == "payload"
    record(1, int(ok), 0 if ok else 1, "restart during a single call (rpc://)")
    assert call.returncode == 0, err
    assert json.loads(out) == {"id": json.loads(out)["id"], "task": "sleep_echo",
                               "status": "SUCCESS", "result": "payload"}
    received = {task_id for _, task_id in worker.received()}
    assert received == {json.loads(out)["id"]}  # published once; maybe delivered twice
    # The run the lost broker stopped, and the run of its message delivered again.
    found = metrics(port, lambda f: sample(f, "celery_tasks_tasks_total", outcome="success") >= 1)
    assert sample(found, "celery_tasks_tasks_total", outcome="interrupted") == 1, worker.log
    assert sample(found, "celery_tasks_tasks_total", outcome="success") == 1
