"""Producer and consumer together, as real processes, against the real RabbitMQ."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.processes import Worker, run_producer, run_script
from tests.conftest import Broker

ARTICLE_SNIPPET = """
from celery_tasks.tasks import MagicCeleryTask
from celery_tasks.utils import create_worker_from

_, worker = create_worker_from(MagicCeleryTask)
result = worker.delay(1, 2, 3)
print(result.get(timeout=30))
"""


def test_the_articles_producer_code_works_unchanged(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    start_worker("unique_magic_task")
    out = run_script(ARTICLE_SNIPPET, env=broker_env, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "6"), out.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["unique_magic_task", "1", "2", "3"], "6"),
        (["count_primes", "100"], "25"),
        (["sleep_echo", "0.1", "hello world"], "hello world"),
        (["divide", "7", "2"], "3.5"),
    ],
)
def test_round_trip_of_every_contract(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], args: list[str],
    expected: str,
) -> None:
    start_worker(args[0])
    out = run_producer(*args, env=broker_env)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, expected, "")


def test_json_output_of_one_task(start_worker: Callable[..., Worker],
                                 broker_env: dict[str, str]) -> None:
    start_worker("unique_magic_task")
    out = run_producer("unique_magic_task", "1", "2", "3", "--json", env=broker_env)
    data = json.loads(out.stdout)
    assert out.returncode == 0
    assert (data["task"], data["status"], data["result"]) == ("unique_magic_task", "SUCCESS", 6)


def test_count_sends_n_tasks_and_prints_a_summary(start_worker: Callable[..., Worker],
                                                  broker_env: dict[str, str]) -> None:
    worker = start_worker("count_primes", concurrency=2)
    out = run_producer("count_primes", "1000", "--count", "50", env=broker_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("count_primes: 50 sent, 50 succeeded, 0 failed in ")
    assert "tasks/s" in out.stdout
    assert len(worker.received()) == 50

    out = run_producer("count_primes", "1000", "--count", "30", "--json", env=broker_env)
    summary = json.loads(out.stdout)
    assert (summary["count"], summary["succeeded"], summary["failed"]) == (30, 30, 0)
    assert summary["elapsed_s"] > 0 and summary["tasks_per_s"] > 0


def test_a_task_error_reaches_the_producer_with_type_and_message(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    start_worker("divide")
    out = run_producer("divide", "1", "0", env=broker_env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "raised ZeroDivisionError: float division by zero" in lines[0]

    out = run_producer("divide", "1", "0", "--json", env=broker_env)
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"] == {"type": "ZeroDivisionError",
                                               "message": "float division by zero"}


def test_a_batch_with_failures_counts_them_and_exits_1(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    start_worker("divide")
    out = run_producer("divide", "1", "0", "--count", "5", "--json", env=broker_env)
    summary = json.loads(out.stdout)
    assert out.returncode == 1
    assert (summary["succeeded"], summary["failed"]) == (0, 5)
    assert summary["errors"][0]["error"]["type"] == "ZeroDivisionError"
    assert "5 of 5 divide tasks failed" in out.stderr


def test_no_result_in_time_is_exit_6(start_worker: Callable[..., Worker],
                                     broker_env: dict[str, str]) -> None:
    start_worker("sleep_echo")
    out = run_producer("sleep_echo", "3", "slow", "--timeout", "0.5", env=broker_env)
    assert out.returncode == 6
    assert "no result for sleep_echo[" in out.stderr and "Traceback" not in out.stderr


def test_a_worker_says_when_its_pool_does_not_enforce_time_limits(
    start_worker: Callable[..., Worker],
) -> None:
    """Celery enforces time limits on prefork only; a threads worker says so at start."""
    threads = start_worker("sleep_echo", pool="threads")
    prefork = start_worker("count_primes", pool="prefork")
    assert ("the threads pool does not enforce time limits (soft 60 s, hard 65 s)"
            in threads.log)
    assert "does not enforce time limits" not in prefork.log


def test_a_worker_at_loglevel_warning_serves_without_a_line_per_task(
    broker: Broker, broker_env: dict[str, str], tmp_path: Path
) -> None:
    """What README's Performance says of `--loglevel warning`: tasks run, unlogged."""
    worker = Worker("unique_magic_task", broker_env, tmp_path, pool="threads", concurrency=4,
                    extra_args=("--loglevel", "warning")).launch()
    process = worker.process
    assert process is not None
    try:  # no " ready." line at this level: wait until it consumes the queue, alone
        deadline = time.monotonic() + 60
        while broker.consumers("unique_magic_task") != 1:
            assert time.monotonic() < deadline and process.poll() is None, worker.log
            time.sleep(0.1)
        out = run_producer("unique_magic_task", "1", "2", "3", "--count", "3", "--json",
                           env=broker_env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["succeeded"] == 3
        assert broker.consumers("unique_magic_task") == 1  # so this worker ran all three
    finally:
        worker.stop()
    assert worker.received() == []
    assert "succeeded in" not in worker.log and "[queues]" in worker.log
