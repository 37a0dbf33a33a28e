"""celery_tasks: the task contracts shared by producer and consumer, and their settings.

This package is vendored into both as a git submodule. The article's modules are here at
the top: `tasks` (the contracts: the part you edit), `celery_config` and
`rabbitmq_config` (the settings), `utils` (`create_worker_from`), with `remote` (the typed
producer API). The machinery is split by who uses it: `core` (both sides), `publisher`
(producers only), `worker` (workers only).

Workflows across contracts (celery_tasks.canvas) come under Celery's names:
`from celery_tasks import chain, chord, group`.

Importing it reads no settings; `celery_tasks.rabbitmq_config` and
`celery_tasks.celery_config` do, when imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first used: `import celery_tasks` stays light
    from .canvas import chain, chord, group

__version__ = "1.2.0"

__all__ = ["__version__", "chain", "chord", "group"]


def __getattr__(name: str) -> Any:
    if name in ("chain", "chord", "group"):
        from . import canvas

        return getattr(canvas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
