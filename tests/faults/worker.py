"""`python -m tests.faults.worker NAME [CELERY WORKER OPTIONS]`: a worker for a test contract.

It is built the article's way, `create_worker_from(Impl)` then `app.worker_main(argv)`.
"""

from __future__ import annotations

import os
import sys

from celery_tasks.utils import create_worker_from
from tests.faults.contracts import IMPLEMENTATIONS

name, *options = sys.argv[1:]
app, _ = create_worker_from(IMPLEMENTATIONS[name])
app.worker_main([f"--hostname={name}.{os.getpid()}@%h", "--without-gossip", "--without-mingle",
                 "--loglevel=info", *options])
