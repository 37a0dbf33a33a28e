"""Entry point: `python -m consumer TASK_NAME [--concurrency N] [--loglevel LEVEL]`."""

from .cli import entry

entry()
