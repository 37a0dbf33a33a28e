"""The worker side: how a worker takes messages in and settles them.

- `consumer`: `ContractConsumer`, which dead-letters every message it cannot run with one
  log line, and reconnects to a cluster's surviving node without stalling.
- `request`: `ContractRequest`, which dead-letters a task that hit its hard time limit.

Celery loads both by name (celery_config's `worker_consumer`, the contract's `Request`);
producers never import this package (their image does not hold it).
"""

__all__ = ["consumer", "request"]
