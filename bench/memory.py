"""`python -m bench.memory N`: stream N tasks (send_stream); print peak RSS (MiB) and time.

This is what `python -m producer TASK ARGS --count N` does: outcomes are counted as they
arrive, never kept, and at most `MAX_IN_FLIGHT` calls are between publish and result.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from celery_tasks.publisher.stream import send_stream
from celery_tasks.tasks import MagicCeleryTask
from celery_tasks.utils import create_worker_from

n = int(sys.argv[1])
_, task = create_worker_from(MagicCeleryTask)
done = [0]


def settled(index: int, task_id: str, status: str, value: Any) -> None:
    done[0] += status == "SUCCESS" and value == 3 + index


start = time.perf_counter()
send_stream(task, (((1, 2, i), {}) for i in range(n)), 900, settled, buffered=True)
elapsed = time.perf_counter() - start
print(json.dumps({"n": n, "completed": done[0], "elapsed_s": elapsed,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
