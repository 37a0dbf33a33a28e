"""celery_tasks: the task contracts shared by producer and consumer, and their settings.

This package is vendored into both as a git submodule. Importing it reads no settings;
`celery_tasks.rabbitmq_config` and `celery_tasks.celery_config` do, when imported.
"""

__version__ = "1.0.0"
