"""What a worker declares on RabbitMQ: every dead-letter exchange before the queues that
name it (RabbitMQ 4 warns, per queue, about one that does not exist yet), and an explicit
delivery limit on each quorum queue of the task (RabbitMQ 4 gives 20 to one without)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from kombu import Exchange, Queue

from harness.processes import CONSUMER_DIR, Worker, clean_env, run_producer
from tests.conftest import Broker, wait_for_depth

# A real worker for `divide`, in this process with its pool on threads, whose AMQP
# declarations are recorded in order; it prints them and exits once it is ready.
RECORDED_WORKER = """
import inspect, json, os
import amqp
from celery.signals import worker_ready
from celery_tasks.utils import create_worker_from
from consumer.implementations import IMPLEMENTATIONS

declared = []
for kind in ("queue", "exchange"):
    original = getattr(amqp.Channel, f"{kind}_declare")
    def record(self, *args, _original=original, _kind=kind, **kwargs):
        bound = inspect.signature(_original).bind(self, *args, **kwargs)
        bound.apply_defaults()
        if not bound.arguments["passive"]:
            declared.append([_kind, bound.arguments[_kind], bound.arguments["arguments"] or {}])
        return _original(self, *args, **kwargs)
    setattr(amqp.Channel, f"{kind}_declare", record)

@worker_ready.connect
def done(**_):
    os.write(1, ("DECLARED " + json.dumps(declared) + chr(10)).encode())  # not the log
    os._exit(0)

app, _ = create_worker_from(IMPLEMENTATIONS["divide"])
app.worker_main(["--pool=threads", "--without-gossip", "--without-mingle", "--loglevel=warning"])
"""


def declarations(env: dict[str, str]) -> list[list]:
    out = subprocess.run([sys.executable, "-c", RECORDED_WORKER], cwd=CONSUMER_DIR,
                         env=clean_env(env), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("DECLARED ")]
    return list(json.loads(line.removeprefix("DECLARED ")))


def test_every_dead_letter_exchange_is_declared_before_a_queue_names_it(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    seen: set[str] = set()
    named = []
    for kind, name, arguments in declarations(broker_env):
        if kind == "exchange":
            seen.add(name)
        elif "x-dead-letter-exchange" in arguments:
            named.append(name)
            assert arguments["x-dead-letter-exchange"] in seen, (name, arguments)
    # The task's queue, and Celery's 28 queues of native delayed delivery (retries).
    assert "divide" in named and sum(n.startswith("celery_delayed_") for n in named) == 28


def test_each_quorum_queue_of_a_task_has_an_explicit_delivery_limit(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    limits = {name: arguments.get("x-delivery-limit")
              for kind, name, arguments in declarations(broker_env)
              if kind == "queue" and arguments.get("x-queue-type") == "quorum"
              and name in {"divide", "divide.dead"}}
    # The task's queue: CELERY_TASKS_DELIVERY_LIMIT; its dead-letter queue: never drop.
    assert limits == {"divide": 5, "divide.dead": 1_000_000}
    listing = json.loads(broker.rabbitmqctl("-q", "list_queues", "-p", broker.vhost, "name",
                                            "arguments", "--formatter", "json"))
    on_broker = {q["name"]: q["arguments"] for q in listing if q["name"] in limits}
    assert set(on_broker) == {"divide", "divide.dead"}
    for name, arguments in on_broker.items():  # as RabbitMQ holds them
        assert table(arguments)["x-delivery-limit"] == limits[name]


def table(arguments: dict[str, object] | list[list[object]]) -> dict[str, object]:
    """Queue arguments as rabbitmqctl's JSON gives them: a mapping, or [key, type, value]."""
    if isinstance(arguments, dict):
        return arguments
    return {str(item[0]): item[-1] for item in arguments}


def test_a_dead_letter_queue_of_an_older_version_is_kept_with_a_warning(
    start_worker: Callable[..., Worker], broker: Broker, broker_env: dict[str, str]
) -> None:
    """Declared before dead-letter queues had a delivery limit: RabbitMQ refuses the new
    arguments (406), and the worker serves on with the queue as it is, saying how to fix it,
    rather than refuse to start during a rolling upgrade."""
    with broker.connection() as conn, conn.channel() as channel:
        Queue("divide.dead", Exchange("celery_tasks.dead", type="direct"), routing_key="divide",
              durable=True, queue_arguments={"x-queue-type": "quorum"})(channel).declare()
    worker = start_worker("divide")
    out = run_producer("divide", "1", "0", env=broker_env)  # fails: into divide.dead
    assert out.returncode == 1, out.stderr
    assert wait_for_depth(broker, "divide.dead", 1) == 1
    assert worker.log.count("dead-letter queue divide.dead was declared by an older version "
                            "without a delivery limit") == 1
