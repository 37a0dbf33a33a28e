"""Entry point: `python -m producer TASK_NAME ARG... [--count N] [--timeout S] [--json]`."""

from .cli import entry

entry()
