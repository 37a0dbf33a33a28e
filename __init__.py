"""celery_tasks: the task contracts shared by producer and consumer, and their settings.

This package is vendored into both as a git submodule. The article's modules are here at
the top: `tasks` (the contracts: the part you edit), `celery_config` and
`rabbitmq_config` (the settings), `utils` (`create_worker_from`), with `remote` (the typed
producer API). The machinery is split by who uses it: `core` (both sides), `publisher`
(producers only), `worker` (workers only).

Importing it reads no settings; `celery_tasks.rabbitmq_config` and
`celery_tasks.celery_config` do, when imported.
"""

__version__ = "1.1.0"

__all__ = ["__version__"]
