"""The producer side: sending calls through the contracts, fast and without losing one.

- `stream`: many calls of one contract (`send_batch`, `send_stream`), with batched
  publisher confirms and one reply queue; `confirms` and `connection` are its parts.
- `single`: one call and its result on a connection each thread keeps (what
  `celery_tasks.remote` and `python -m producer TASK ARGS` use).

Workers never import this package (their image does not hold it).
"""

from .single import call, supports_single_call_path
from .stream import BatchOutcome, StreamOutcome, collect_results, send_batch, send_stream

__all__ = ["BatchOutcome", "StreamOutcome", "call", "collect_results", "send_batch",
           "send_stream", "supports_single_call_path"]
