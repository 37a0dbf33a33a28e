"""`python -m bench.rtt SAMPLES`: round trips of `remote(MagicCeleryTask.run)`, as JSON.

A process of its own, so the settings (vhost, CELERY_TASKS_QUEUE_TYPE) come from its
environment: the bench runs it against classic queues too.
"""

from __future__ import annotations

import json
import sys

from bench.__main__ import timed_rtt
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

magic = remote(MagicCeleryTask.run)
print(json.dumps(timed_rtt(lambda: magic(1, 2, 3), int(sys.argv[1]))))
