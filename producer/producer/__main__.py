"""Entry point: `python -m producer TASK_NAME ARG... [--count N] [--timeout S] [--json]`."""

from celery_tasks.cli import run_cli

from .cli import main

run_cli(main)
