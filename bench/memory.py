"""`python -m bench.memory N`: send N tasks on the batch path; print peak RSS (MiB) and time."""

from __future__ import annotations

import json
import resource
import sys
import time

from celery_tasks.batch import send_batch
from celery_tasks.tasks import MagicCeleryTask
from celery_tasks.utils import create_worker_from

n = int(sys.argv[1])
_, task = create_worker_from(MagicCeleryTask)
start = time.perf_counter()
done = sum(1 for o in send_batch(task, [((1, 2, i), {}) for i in range(n)], 600).outcomes if o)
elapsed = time.perf_counter() - start
print(json.dumps({"n": n, "completed": done, "elapsed_s": elapsed,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
