"""What the worker's metrics and traces say when tasks retry, time out or kill their process:
each run counted once under its own outcome, every run of one call in one trace."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.compose import free_port
from harness.processes import ROOT, Worker, kill_all
from tests.conftest import Broker, wait_for_depth
from tests.faults.conftest import send
from tests.test_telemetry import Samples, metrics, named, read_spans, sample, span_id, trace_id

Metered = Callable[[str], tuple[dict[str, str], Path, int]]


@pytest.fixture
def metered(fault_broker: Broker, fault_env: dict[str, str], tmp_path: Path) -> Iterator[Metered]:
    """Start a test contract's worker serving metrics, both sides tracing to one file:
    (the callers' settings, the spans file, the metrics port)."""
    started: list[Worker] = []

    def start(task: str) -> tuple[dict[str, str], Path, int]:
        spans, port = tmp_path / "spans.jsonl", free_port()
        env = {**fault_env, "CELERY_TASKS_TRACES_FILE": str(spans),
               "OTEL_BSP_SCHEDULE_DELAY": "100"}
        worker = Worker(task, {**env, "CELERY_TASKS_METRICS_PORT": str(port)}, tmp_path,
                        cwd=ROOT, module="tests.faults.worker")
        started.append(worker)
        worker.start()
        return env, spans, port

    yield start
    kill_all(started)


def outcomes(found: Samples, task: str) -> dict[str, float]:
    """celery_tasks_tasks_total of `task` by outcome, the zeros left out."""
    return {dict(labels)["outcome"]: value for (name, labels), value in found.items()
            if name == "celery_tasks_tasks_total" and dict(labels)["task"] == task and value}


def test_each_retry_is_counted_and_traced_under_the_run_that_retried(metered: Metered) -> None:
    env, path, port = metered("faults_flaky")
    report = send("faults_flaky", ["flaky2", 2], env)
    assert report["results"] == [3]
    found = metrics(port, lambda f: outcomes(f, "faults_flaky").get("success") == 1)
    assert outcomes(found, "faults_flaky") == {"retry": 2, "success": 1}
    spans = read_spans(path, lambda s: len(named(s, "run/faults_flaky")) == 3)
    runs = sorted(named(spans, "run/faults_flaky"),
                  key=lambda r: r["attributes"]["celery_tasks.retries"])
    assert [r["attributes"]["celery_tasks.retries"] for r in runs] == [0, 1, 2]
    assert [r["attributes"]["celery_tasks.outcome"] for r in runs] == ["retry", "retry",
                                                                      "success"]
    assert len({trace_id(r) for r in runs}) == 1
    # Each retry is published by the run before it, and runs under that publish.
    by_id = {span_id(s): s for s in spans}
    for before, after in itertools.pairwise(runs):
        assert by_id[after["parent_id"]]["parent_id"] == span_id(before)


@pytest.mark.parametrize(("key", "seconds", "stubborn", "error"), [
    ("soft", 5, False, "SoftTimeLimitExceeded"),  # raised in the task at the soft limit
    ("hard", 10, True, "TimeLimitExceeded"),      # the pool process killed at the hard one
])
def test_a_time_limit_is_one_timeout_dead_lettered_and_answered_in_the_callers_trace(
    metered: Metered, fault_broker: Broker, key: str, seconds: int, stubborn: bool,
    error: str,
) -> None:
    env, path, port = metered("faults_slow")
    report = send("faults_slow", [key, seconds, stubborn], env)
    assert report["errors"][0].startswith(error)
    assert wait_for_depth(fault_broker, "faults_slow.dead", 1) == 1
    found = metrics(port, lambda f: sample(f, "celery_tasks_dead_lettered_total") == 1)
    assert outcomes(found, "faults_slow") == {"timeout": 1}
    assert sample(found, "celery_tasks_dead_lettered_total", reason="timeout") == 1
    spans = read_spans(path, lambda s: bool(named(s, "dead-letter faults_slow"))
                       and bool(named(s, "reply faults_slow")))
    (publish,) = named(spans, "apply_async/faults_slow")
    (letter,) = named(spans, "dead-letter faults_slow")
    (reply,) = named(spans, "reply faults_slow")
    assert {trace_id(letter), trace_id(reply)} == {trace_id(publish)}
    assert letter["attributes"]["celery_tasks.outcome"] == "timeout"


def test_a_task_that_kills_its_process_counts_each_lost_run(
    metered: Metered, fault_broker: Broker
) -> None:
    env, _, port = metered("faults_crash")
    report = send("faults_crash", ["crash"], env)
    assert report["errors"][0].startswith("WorkerLostError")
    assert wait_for_depth(fault_broker, "faults_crash.dead", 1) == 1
    found = metrics(port, lambda f: sample(f, "celery_tasks_dead_lettered_total") == 1)
    assert outcomes(found, "faults_crash") == {"worker_lost": 3}  # the run and 2 retries
    assert sample(found, "celery_tasks_dead_lettered_total", reason="worker_lost") == 1
