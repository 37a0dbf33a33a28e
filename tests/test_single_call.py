"""The single-call path (celery_tasks.publisher.single): one connection per thread, kept open.

Results and errors as with Celery's path, each call published once, a call that outlives
its connection published again on a new one, a call with no worker a timeout that names it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

from harness.processes import PRODUCER_DIR, Worker, clean_env, run_producer, run_script
from tests.conftest import Broker, wait_for_depth

CALLS = """
import json, threading
from celery_tasks.publisher import single as caller
from celery_tasks.core.errors import TaskFailed
from celery_tasks.remote import remote
from celery_tasks.tasks import DivideTask

divide = remote(DivideTask.run, timeout=60)
out = {"single": divide(6, 3), "keyword": divide(a=1, b=4)}
try:
    divide(1, 0)
except TaskFailed as exc:
    out["error"] = str(exc)
by_thread = {}

def work(n):
    by_thread[n] = [divide(n * 100 + i, 2) for i in range(25)]
    by_thread[n].append(caller.line_for(divide.task.app).reply.name)

threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["threads"] = by_thread
out["main_reply_queue"] = caller.line_for(divide.task.app).reply.name
# A Remote made anew for each call (a new Celery app each time) shares this thread's line.
out["fresh"] = [remote(DivideTask.run)(8, 2) for _ in range(3)]
out["lines_here"] = caller.lines_open()
print(json.dumps(out))
"""


def test_single_calls_give_results_and_errors_on_a_line_per_thread(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    worker = start_worker("divide", pool="threads", concurrency=4)
    out = run_script(CALLS, env=broker_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["single"], got["keyword"]) == (2.0, 0.25)
    assert got["error"].startswith("task divide[") and got["error"].endswith(
        "raised ZeroDivisionError: float division by zero")
    for n, results in got["threads"].items():
        assert results[:-1] == [(int(n) * 100 + i) / 2 for i in range(25)]  # each its own
    queues = {results[-1] for results in got["threads"].values()} | {got["main_reply_queue"]}
    assert len(queues) == 5 and all(q.startswith("celery_tasks.reply.") for q in queues)
    assert (got["fresh"], got["lines_here"]) == ([4.0, 4.0, 4.0], 1)
    assert len(worker.received()) == 3 + 4 * 25 + 3  # each call published once
    assert wait_for_depth(broker, "divide.dead", 1) == 1  # the failed call kept


RECONNECT = """
import sys
from celery_tasks.publisher import single as caller
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

magic = remote(MagicCeleryTask.run, timeout=30)
print(magic(1, 2, 3), flush=True)
sys.stdin.readline()  # the test closes this connection from the broker's side meanwhile
print(magic(4, 5, 6), flush=True)
"""


def _close_connection_of(broker: Broker, process: int) -> None:
    """Close, from RabbitMQ's side, the one connection of client `process` (its connection
    name ends with its pid, see celery_config)."""
    listing = broker.rabbitmqctl("-q", "list_connections", "pid", "client_properties")
    pids = [line.split("\t")[0] for line in listing.splitlines()
            if f' pid {process}"' in line]
    assert len(pids) == 1, listing
    broker.rabbitmqctl("close_connection", pids[0], "closed by the test")


def test_a_call_after_the_broker_closed_the_line_connects_again_and_publishes_once(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    worker = start_worker("unique_magic_task")
    proc = subprocess.Popen([sys.executable, "-c", RECONNECT], cwd=PRODUCER_DIR,
                            env=clean_env(broker_env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "6"
        _close_connection_of(broker, proc.pid)
        time.sleep(0.5)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, stdout.strip()) == (0, "15"), stderr
    assert len(worker.received()) == 2  # the call on the closed connection was not delivered


def test_a_single_call_with_no_worker_is_a_timeout_naming_the_task(
    broker_env: dict[str, str], broker: Broker
) -> None:
    # 3 s: the deadline also covers connecting, declaring and the publish's confirm, which
    # must come first for "stays queued" (else the call is "never confirmed").
    out = run_producer("unique_magic_task", "1", "2", "3", "--timeout", "3", env=broker_env)
    assert out.returncode == 6
    assert out.stderr.startswith("error: no result for unique_magic_task[")
    assert ("within 3 s: is a worker running for unique_magic_task? The task stays queued "
            "and may still run") in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert broker.depth("unique_magic_task") == 1  # confirmed, queued, kept


UNREACHABLE = """
from celery_tasks.core.errors import BrokerUnreachable
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

try:
    remote(MagicCeleryTask.run, timeout=2)(1, 2, 3)
except BrokerUnreachable as exc:
    print("BrokerUnreachable:", exc)
"""


def test_a_single_call_with_no_broker_is_broker_unreachable_within_its_timeout(
    broker_env: dict[str, str]
) -> None:
    env = {**broker_env, "RABBITMQ_PORT": "1", "BROKER_CONNECT_TIMEOUT": "1"}
    started = time.monotonic()
    out = run_script(UNREACHABLE, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BrokerUnreachable: could not reach the broker to send "
                                 "unique_magic_task[")
    assert out.stdout.rstrip().endswith("; nothing was sent")
    assert time.monotonic() - started < 30


QUEUE_DELETED = """
import json
from kombu import Connection
from celery_tasks.core.errors import TaskTimeout
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

magic = remote(MagicCeleryTask.run, timeout=3)  # the confirm, then no result
errors = []
for _ in range(2):
    try:
        magic(1, 2, 3)
    except TaskTimeout as exc:
        errors.append(str(exc))
    # An operator deletes the task's queue (its exchange stays) while this line is open.
    with magic.task.app.connection_for_write() as conn:
        conn.default_channel.queue_delete("unique_magic_task")
try:
    magic(1, 2, 3)
except TaskTimeout as exc:
    errors.append(str(exc))
print(json.dumps(errors))
"""


def test_a_call_whose_queue_was_deleted_declares_it_again_rather_than_lose_the_task(
    broker_env: dict[str, str], broker: Broker
) -> None:
    """With no worker each call times out; a call published after its queue was deleted
    comes back unroutable (mandatory) and is sent again into a queue declared anew, so the
    timeout's 'the task stays queued' is true."""
    out = run_script(QUEUE_DELETED, env=broker_env)
    assert out.returncode == 0, out.stderr
    errors = json.loads(out.stdout)
    assert len(errors) == 3
    assert all("is a worker running for unique_magic_task? The task stays queued" in e
               for e in errors)
    assert broker.depth("unique_magic_task") == 1  # the last call, queued
