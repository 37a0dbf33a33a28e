"""Bare Celery, for comparison: a function task as in the article, two sets of settings.

BENCH_SETTINGS=article: Celery's defaults (ack on receipt, no publisher confirms).
BENCH_SETTINGS=reliable: the same delivery settings as this project (late ack, reject on
worker lost, prefetch 1, publisher confirms, a quorum queue), still a plain app and plain
delay().
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bare", broker=os.environ["BENCH_BROKER_URL"], backend="rpc://")
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                task_default_queue="bench_bare", worker_hijack_root_logger=False)
if os.environ.get("BENCH_SETTINGS") == "reliable":
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                    worker_prefetch_multiplier=1,
                    broker_transport_options={"confirm_publish": True},
                    task_default_queue="bench_bare_quorum", task_default_queue_type="quorum")


@app.task(name="bench_add")
def add(arg1: int, arg2: int, arg3: int) -> int:
    return arg1 + arg2 + arg3
