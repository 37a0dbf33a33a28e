"""The message size limit (RabbitMQ 4.x: 16 MiB): a call over it is refused before anything
is published, on every path; a result over it is an error naming the task, the size and the
limit, in one log line; a broker whose limit is lower than the setting is a setting to fix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from harness.processes import Worker, run_script
from tests.conftest import Broker, wait_for_depth
from tests.faults.conftest import send

MiB = 2**20

OVER_THE_LIMIT = """
import json
from celery_tasks.publisher.stream import send_batch, send_stream
from celery_tasks.core.errors import BadArguments
from celery_tasks.remote import remote
from celery_tasks.tasks import SleepEchoTask
from celery_tasks.utils import create_worker_from

big = "x" * (20 * 2**20)
_, task = create_worker_from(SleepEchoTask)
paths = {
    "single call": lambda: remote(SleepEchoTask.run, timeout=5)(0, big),
    "delay": lambda: task.delay(0, big),
    "batch": lambda: send_batch(task, [((0, "small"), {}), ((0, big), {})], 5),
    "stream": lambda: send_stream(task, [((0, big), {})], 5, lambda *_: None),
}
errors = {}
for path, send in paths.items():
    try:
        send()
    except BadArguments as exc:
        errors[path] = str(exc)
print(json.dumps(errors))
"""


def test_a_call_over_the_limit_is_bad_arguments_on_every_path_and_nothing_is_sent(
    broker: Broker, broker_env: dict[str, str], record: Callable[..., None]
) -> None:
    broker.declare("sleep_echo")
    out = run_script(OVER_THE_LIMIT, env=broker_env)
    assert out.returncode == 0, out.stderr
    errors = json.loads(out.stdout)
    assert sorted(errors) == ["batch", "delay", "single call", "stream"]
    for text in errors.values():
        assert re.search(r"the arguments take 20,971,5\d\d bytes as JSON, over the 16,711,680 "
                         r"bytes a message holds \(CELERY_TASKS_MAX_MESSAGE_SIZE, 16 MiB", text)
    assert broker.depth("sleep_echo") == 0  # the batch's small call was not sent either
    record(4, 0, 0, "20 MiB argument: BadArguments on 4 paths, nothing published")


NEAR_THE_LIMIT = """
from celery_tasks.remote import remote
from celery_tasks.tasks import SleepEchoTask

payload = "y" * (15 * 2**20)
print(remote(SleepEchoTask.run, timeout=60)(0, payload) == payload)
"""


def test_a_call_near_the_limit_runs_and_its_result_comes_back_whole(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    """15 MiB in, 15 MiB out: the result no longer repeats the arguments (result_extended is
    off), so it fits as the call did."""
    start_worker("sleep_echo", pool="threads")
    out = run_script(NEAR_THE_LIMIT, env=broker_env)
    assert (out.returncode, out.stdout.strip()) == (0, "True"), out.stderr


def test_a_result_over_the_limit_is_an_error_naming_task_size_and_limit(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    worker = start_fault_worker("faults_repeat")
    report = send("faults_repeat", ["ab", 9 * MiB], fault_env)  # 18 MiB from a tiny call
    assert report["failed"] == 1, report
    assert report["errors"][0] == (
        "ContractViolation: faults_repeat: its result would take 18,874,370 bytes as JSON, "
        "over the 16,711,680 bytes a message holds (CELERY_TASKS_MAX_MESSAGE_SIZE, 16 MiB, "
        "less 64 KiB for headers): pass a reference (a URL, a key) instead")
    assert wait_for_depth(fault_broker, "faults_repeat.dead", 1) == 1
    assert send("faults_repeat", ["ab", 3], fault_env)["results"] == ["ababab"]  # serving
    lines = [line for line in worker.log.splitlines() if "18,874,370 bytes" in line]
    assert len(lines) == 1 and "Traceback" not in worker.log, worker.log
    record(1, 0, 0, "18 MiB result: ContractViolation to the caller, one log line")


def broker_limit(broker: Broker) -> int:
    """RabbitMQ's own max_message_size (16 MiB on 4.x, 128 MiB on 3.x)."""
    found = re.search(r"\{ok,(\d+)\}", broker.rabbitmqctl(
        "eval", "application:get_env(rabbit, max_message_size)."))
    assert found is not None
    return int(found.group(1))


OVER_THE_BROKERS_LIMIT = """
import json, sys
from celery_tasks.publisher.stream import send_batch
from celery_tasks.core.errors import ConfigError
from celery_tasks.remote import remote
from celery_tasks.tasks import SleepEchoTask
from celery_tasks.utils import create_worker_from

big = "z" * int(sys.argv[1])
_, task = create_worker_from(SleepEchoTask)
paths = {
    "single call": lambda: remote(SleepEchoTask.run, timeout=30)(0, big),
    "delay": lambda: task.delay(0, big),
    "batch": lambda: send_batch(task, [((0, big), {})], 30),
}
errors = {}
for path, send in paths.items():
    try:
        send()
    except ConfigError as exc:
        errors[path] = str(exc)
print(json.dumps(errors))
"""


def test_a_setting_above_the_brokers_limit_is_a_setting_to_fix(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    """The setting lets a call through that RabbitMQ refuses (406): a ConfigError naming
    both sizes and the setting, not a raw PreconditionFailed, and nothing queued."""
    limit = broker_limit(broker)
    broker.declare("sleep_echo")
    env = {**broker_env, "CELERY_TASKS_MAX_MESSAGE_SIZE": "512MiB"}
    out = run_script(OVER_THE_BROKERS_LIMIT, str(limit + MiB), env=env)
    assert out.returncode == 0, out.stderr
    errors = json.loads(out.stdout)
    assert sorted(errors) == ["batch", "delay", "single call"], out.stdout
    for text in errors.values():
        assert re.search(rf"is larger than configured max size {limit}; set "
                         "CELERY_TASKS_MAX_MESSAGE_SIZE to the broker's max_message_size",
                         text), text
    assert broker.depth("sleep_echo") == 0
