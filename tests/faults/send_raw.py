"""`python -m tests.faults.send_raw QUEUE NAME ARGS_JSON`: `send_task` by name, no contract.

The way `celery call`, another codebase or another language sends: no argument check, no
contract headers. Prints {"status", "error_type", "error", "result"} of the one task.
"""

from __future__ import annotations

import json
import sys

from celery.exceptions import TimeoutError as CeleryTimeout

from celery_tasks.tasks import CONTRACTS
from celery_tasks.utils import create_worker_from
from tests.faults.contracts import IMPLEMENTATIONS

queue, name, args_json = sys.argv[1:4]
contract = {**CONTRACTS, **{k: v.contract for k, v in IMPLEMENTATIONS.items()}}[queue]
app, _ = create_worker_from(contract)
result = app.send_task(name, args=json.loads(args_json), queue=queue)
try:
    value = result.get(timeout=30, propagate=False)
except CeleryTimeout:
    print(json.dumps({"status": "TIMEOUT"}))
    sys.exit(0)
print(json.dumps({"status": result.state, "error_type": type(value).__name__,
                  "error": str(value), "result": value if result.state == "SUCCESS" else None}))
