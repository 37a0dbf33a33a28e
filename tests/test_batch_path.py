"""The batch path: outcomes in call order, an error per failing item, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from harness.processes import PRODUCER_DIR, Worker, clean_env, run_script
from tests.conftest import Broker, wait_for_depth

SCRIPT = """
import json
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from
from producer.client import send_many

_, task = create_worker_from(DivideTask)
calls = [((i, i % 4), {}) for i in range(200)]
report = send_many(task, calls, timeout=60)
print(json.dumps([o.as_json() if o else None for o in report.outcomes]))
"""


def test_outcomes_come_back_in_order_with_an_error_per_failing_item(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    worker = start_worker("divide", pool="threads", concurrency=4)
    out = run_script(SCRIPT, env=broker_env)
    assert out.returncode == 0, out.stderr
    outcomes = json.loads(out.stdout)
    assert len(outcomes) == 200 and None not in outcomes  # nothing lost
    for i, outcome in enumerate(outcomes):
        if i % 4 == 0:
            assert outcome["error"] == {"type": "ZeroDivisionError",
                                        "message": "float division by zero"}
        else:
            assert outcome["result"] == i / (i % 4)  # in call order
    assert len(worker.received()) == 200  # each call published once
    assert wait_for_depth(broker, "divide.dead", 50) == 50  # every failed message kept


def test_a_broker_that_stops_confirming_is_a_timeout_not_a_lost_broker(
    broker_env: dict[str, str], broker: Broker
) -> None:
    """A memory alarm blocks publishers: no confirms come, but the connection stays up.

    The batch must wait for them until its deadline and then report the calls as pending
    (exit 6), never take the silence for a lost connection (exit 5) and publish again.
    """
    broker.declare("divide")
    broker.rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
    try:
        out = subprocess.run([sys.executable, "-m", "producer", "divide", "1", "2", "--count",
                              "20", "--timeout", "4"], cwd=PRODUCER_DIR,
                             env=clean_env(broker_env), capture_output=True, text=True,
                             timeout=120)
        no_wait = subprocess.run([sys.executable, "-m", "producer", "divide", "1", "2",
                                  "--count", "20", "--no-wait", "--timeout", "3"],
                                 cwd=PRODUCER_DIR, env=clean_env(broker_env),
                                 capture_output=True, text=True, timeout=120)
    finally:
        broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    assert out.returncode == 6, out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "20 of 20 divide results did not arrive within 4 s" in out.stderr
    assert "RabbitMQ never confirmed 20 of them" in out.stderr
    assert no_wait.returncode == 6, no_wait.stderr  # not "sent": nothing was confirmed
    assert "RabbitMQ confirmed 0 of 20 divide tasks within 3 s" in no_wait.stderr
    assert no_wait.stdout == ""


STREAM_SCRIPT = """
import json, sys
from celery_tasks.publisher.stream import send_stream
from celery_tasks.core.errors import BadArguments
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from

_, task = create_worker_from(DivideTask)
n, bound, bad_at = (int(x) for x in sys.argv[1:4])
taken, outcomes, widest = [0], {}, [0]

def calls():
    for i in range(n):
        taken[0] += 1
        yield ((i, i % 4), {}) if i != bad_at else ((i, "four"), {})

def settled(index, task_id, status, value):
    widest[0] = max(widest[0], taken[0] - len(outcomes))  # calls in flight right now
    outcomes[index] = [status, value if status == "SUCCESS" else type(value).__name__]

try:
    report = send_stream(task, calls(), 60, settled, max_in_flight=bound)
except BadArguments as exc:
    print(json.dumps({"refused": str(exc), "taken": taken[0], "outcomes": outcomes}))
    sys.exit(0)
print(json.dumps({"outcomes": outcomes, "widest": widest[0], "sent": report.sent,
                  "exhausted": report.exhausted, "pending": report.pending_ids}))
"""


def run_stream(env: dict[str, str], n: int, bound: int, bad_at: int = -1) -> dict:
    out = run_script(STREAM_SCRIPT, str(n), str(bound), str(bad_at), env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_stream_keeps_its_bound_in_flight_and_settles_every_call_in_its_place(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    worker = start_worker("divide", pool="threads", concurrency=4)
    got = run_stream(broker_env, 3000, 100)
    assert got["sent"] == 3000 and got["exhausted"] and got["pending"] == []
    outcomes = {int(i): o for i, o in got["outcomes"].items()}
    assert sorted(outcomes) == list(range(3000))  # nothing lost
    for i, outcome in outcomes.items():
        expected = ["FAILURE", "ZeroDivisionError"] if i % 4 == 0 else ["SUCCESS", i / (i % 4)]
        assert outcome == expected
    assert 0 < got["widest"] <= 100  # never more than the bound between publish and result
    assert len(worker.received()) == 3000  # each call published once


def test_a_bad_call_stops_a_stream_after_the_calls_before_it(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    worker = start_worker("divide", pool="threads", concurrency=4)
    got = run_stream(broker_env, 50, 1000, bad_at=20)
    assert got["taken"] == 21 and "argument b must be float" in got["refused"]
    assert sorted(int(i) for i in got["outcomes"]) == list(range(20))  # settled, then raised
    assert len(worker.received()) == 20  # the 20 before it ran; the bad one never left


DELETED_SCRIPT = """
import json, sys
from celery_tasks.publisher.stream import send_stream
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from

_, task = create_worker_from(DivideTask)

def calls():
    # The stream has declared the queue by now: delete it (or its exchange) under it.
    with task.app.connection_for_write() as conn:
        getattr(conn.default_channel, sys.argv[1] + "_delete")(task.name)
    for i in range(300):
        yield (i, 1), {}

report = send_stream(task, calls(), 60, lambda *_: None, wait=False)
print(json.dumps({"sent": report.sent, "republished": report.republished,
                  "unconfirmed": report.unconfirmed_ids, "errors": report.errors,
                  "setup_timed": 0 < report.connecting < report.published_in}))
"""


@pytest.mark.parametrize("deleted", ["queue", "exchange"])
def test_calls_whose_queue_or_exchange_is_deleted_under_the_stream_are_all_queued(
    deleted: str, broker_env: dict[str, str], broker: Broker
) -> None:
    """An unroutable message is confirmed by RabbitMQ all the same, then dropped: the batch
    path publishes mandatory, declares the queue again and sends it again. It publishes
    straight to the queue, so the task's exchange is not needed. (Its deletion still takes
    the workers' `#.divide` delayed-delivery bindings with it until a worker starts again:
    countdown retries need them.)"""
    out = run_script(DELETED_SCRIPT, deleted, env=broker_env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["sent"] == 300 and report["unconfirmed"] == [] and report["setup_timed"]
    assert broker.depth("divide") == 300  # every call queued, once
    if deleted == "queue":
        assert report["republished"] > 0  # those published before the queue was back
    else:
        assert report["errors"] == [] and report["republished"] == 0


SLOW_SCRIPT = """
import json, time
from celery_tasks.publisher.stream import send_stream
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from

_, task = create_worker_from(DivideTask)
seen = []

def depth():
    with task.app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(task.name, passive=True).message_count

def calls():
    for i in range(20):
        yield (i, 1), {}
    deadline = time.monotonic() + 5  # a feed with nothing new for a while
    while depth() < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    seen.append(depth())
    yield (20, 1), {}

report = send_stream(task, calls(), 60, lambda *_: None, wait=False)
print(json.dumps({"queued_while_waiting": seen[0], "sent": report.sent}))
"""


def test_calls_taken_from_an_iterable_that_waits_are_sent_meanwhile(
    broker_env: dict[str, str], broker: Broker
) -> None:
    out = run_script(SLOW_SCRIPT, env=broker_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"queued_while_waiting": 20, "sent": 21}


BIG_SCRIPT = """
import json
from celery_tasks.tasks import SleepEchoTask
from celery_tasks.utils import create_worker_from
from producer.client import send_many

_, task = create_worker_from(SleepEchoTask)
payloads = [chr(ord("a") + i) * (300_000 + i) for i in range(12)]  # over 2 frames each
report = send_many(task, [((0, p), {}) for p in payloads], timeout=60)
print(json.dumps([o.as_json()["result"] == p for o, p in zip(report.outcomes, payloads)]))
"""


def test_calls_larger_than_a_frame_arrive_whole(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    """RabbitMQ's frames hold 128 KiB: the batch path splits bigger bodies over frames."""
    start_worker("sleep_echo")
    out = run_script(BIG_SCRIPT, env=broker_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [True] * 12
