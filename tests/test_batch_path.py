"""The batch path: outcomes in call order, an error per failing item, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from harness.processes import PRODUCER_DIR, Worker, clean_env
from tests.conftest import Broker

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
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PRODUCER_DIR,
                         env=clean_env(broker_env), capture_output=True, text=True, timeout=120)
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
    assert broker.depth("divide.dead") == 50  # every failed message kept


def test_a_broker_that_stops_confirming_is_a_timeout_not_a_lost_broker(
    broker_env: dict[str, str], broker: Broker
) -> None:
    """A memory alarm blocks publishers: no confirms come, but the connection stays up.

    The batch must wait for them until its deadline and then report the calls as pending
    (exit 6), never take the silence for a lost connection (exit 5) and publish again.
    """
    broker.declare("divide")
    alarm = ["rabbitmqctl", "set_vm_memory_high_watermark", "absolute", "1"]
    subprocess.run(alarm, check=True, capture_output=True, timeout=60)
    try:
        out = subprocess.run([sys.executable, "-m", "producer", "divide", "1", "2", "--count",
                              "20", "--timeout", "4"], cwd=PRODUCER_DIR,
                             env=clean_env(broker_env), capture_output=True, text=True,
                             timeout=120)
    finally:
        subprocess.run(["rabbitmqctl", "set_vm_memory_high_watermark", "0.4"], check=True,
                       capture_output=True, timeout=60)
    assert out.returncode == 6, out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "20 of 20 divide results did not arrive within 4 s" in out.stderr
    assert "RabbitMQ never confirmed 20 of them" in out.stderr
