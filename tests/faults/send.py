"""`python -m tests.faults.send NAME ARGS_JSON [COUNT] [TIMEOUT]`: send, wait, print JSON.

Prints {"sent", "completed", "failed", "missing", "errors", "results"}: every task either
completed, failed with an error, or is missing (no outcome within TIMEOUT seconds).
"""

from __future__ import annotations

import json
import sys
import time

from celery.exceptions import TimeoutError as CeleryTimeout

from celery_tasks.utils import create_worker_from
from tests.faults.contracts import IMPLEMENTATIONS

name, args_json, *rest = sys.argv[1:]
count = int(rest[0]) if rest else 1
timeout = float(rest[1]) if len(rest) > 1 else 60.0
_, task = create_worker_from(IMPLEMENTATIONS[name].contract)
results = [task.apply_async(json.loads(args_json)) for _ in range(count)]
report: dict = {"sent": count, "completed": 0, "failed": 0, "missing": [], "errors": [],
                "results": []}
deadline = time.monotonic() + timeout
for result in results:
    try:
        value = result.get(timeout=max(deadline - time.monotonic(), 0.01), propagate=False)
    except CeleryTimeout:
        report["missing"].append(result.id)
        continue
    if result.successful():
        report["completed"] += 1
        report["results"].append(value)
    else:
        report["failed"] += 1
        report["errors"].append(f"{type(value).__name__}: {value}")
print(json.dumps(report))
