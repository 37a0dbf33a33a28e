"""Entry point: `python -m consumer TASK_NAME [--concurrency N] [--loglevel LEVEL]`."""

from celery_tasks.cli import run_cli

from .cli import main

run_cli(main)
