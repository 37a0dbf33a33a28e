"""Poison messages end in the dead-letter queue after a bounded number of runs; the caller
gets an error; transient errors are retried with backoff; time limits are errors."""

from __future__ import annotations

from collections.abc import Callable

from harness.processes import Worker
from tests.conftest import Broker, wait_for_depth
from tests.faults.conftest import attempts, send


def test_transient_errors_are_retried_then_succeed(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_flaky")
    report = send("faults_flaky", ["flaky2", 2], fault_env)
    assert report["results"] == [3]  # failed twice, succeeded on the third run
    assert attempts(fault_env, "flaky2") == 3
    assert wait_for_depth(fault_broker, "faults_flaky.dead", 0) == 0
    record(1, report["completed"], len(report["missing"]), "2 transient errors, then success")


def test_persistent_transient_errors_stop_after_max_retries_and_dead_letter(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_flaky")
    report = send("faults_flaky", ["flaky99", 99], fault_env)
    assert report["failed"] == 1
    assert report["errors"][0].startswith("ConnectionError: flaky99: attempt 5 failed")
    assert attempts(fault_env, "flaky99") == 5  # the first run and max_retries = 4
    assert wait_for_depth(fault_broker, "faults_flaky.dead", 1) == 1
    record(1, 0, 0, "error to caller after 5 runs; message in faults_flaky.dead")


def test_a_task_that_always_fails_fails_once_and_is_dead_lettered(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_fail")
    report = send("faults_fail", ["fail"], fault_env)
    assert report["errors"] == ["ValueError: fail: this task always fails"]
    assert attempts(fault_env, "fail") == 1
    assert wait_for_depth(fault_broker, "faults_fail.dead", 1) == 1
    record(1, 0, 0, "error to caller at once; message in faults_fail.dead")


def test_a_task_that_kills_its_process_every_time_is_bounded(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    worker = start_fault_worker("faults_crash")
    report = send("faults_crash", ["crash"], fault_env)
    assert report["failed"] == 1
    assert report["errors"][0].startswith("WorkerLostError")
    assert attempts(fault_env, "crash") == 3  # the first run and max_retries = 2
    assert wait_for_depth(fault_broker, "faults_crash.dead", 1) == 1
    assert worker.process is not None and worker.process.poll() is None  # still serving
    record(1, 0, 0, "WorkerLostError after 3 runs; message in faults_crash.dead")


def test_the_soft_time_limit_is_an_error_for_the_caller(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_slow")
    report = send("faults_slow", ["soft", 5, False], fault_env)
    assert report["errors"][0].startswith("SoftTimeLimitExceeded")
    assert wait_for_depth(fault_broker, "faults_slow.dead", 1) == 1
    record(1, 0, 0, "SoftTimeLimitExceeded to caller; dead-lettered")


def test_the_hard_time_limit_kills_the_task_once_and_dead_letters_it(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_slow")
    report = send("faults_slow", ["hard", 10, True], fault_env)
    assert report["errors"][0].startswith("TimeLimitExceeded")
    assert wait_for_depth(fault_broker, "faults_slow.dead", 1) == 1
    assert attempts(fault_env, "hard") == 1  # not requeued into another run
    record(1, 0, 0, "TimeLimitExceeded to caller; dead-lettered, not rerun")
