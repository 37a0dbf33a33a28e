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
