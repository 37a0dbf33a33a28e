"""`create_worker_from`: one Celery app per task, listening only on that task's queue."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from celery import Celery, Task

from .core import tracing
from .core.contract import check_implementation, is_contract_class
from .core.results import ReplyQueueBackend
from .core.topology import declare_topology, task_queue


class ContractApp(Celery):
    """A Celery app whose `worker_main` only ever runs real implementations.

    Its `rpc://` backend declares the reply queue once, not on every call (core/results.py).
    Unlike Celery's own, `worker_main` works without `'worker'` as the first argument,
    and refuses to start a worker for a contract stub or a drifted implementation.
    """

    control_cls = "celery_tasks.core.control:ContractControl"

    def _get_backend(self) -> Any:
        """`rpc://` is Celery's rpc backend, minus its reply-queue declaration per call."""
        url = self.conf.result_backend
        if isinstance(url, str) and url.partition("://")[0].lower() == "rpc":
            return tracing.traced_replies(ReplyQueueBackend(app=self, url=url))
        return tracing.traced_replies(super()._get_backend())

    def worker_main(self, argv: Sequence[str] | None = None) -> None:
        args = list(argv or [])
        if not args or args[0] != "worker":
            args.insert(0, "worker")
        for task in self.tasks.values():
            if is_contract_class(type(task)):
                check_implementation(type(task))
        declare_topology(self)
        from .rabbitmq_config import SETTINGS
        from .worker import observe  # metrics and traces, as the settings ask

        observe.start(self, SETTINGS)
        super().worker_main(args)


def create_worker_from(
    WorkerClass: type[Task],  # noqa: N803  # the article's parameter name
    celery_config: str | ModuleType = "celery_tasks.celery_config",
) -> tuple[ContractApp, Any]:
    """Build a Celery app for one task class and register an instance of it.

    The app's only queue is named after the task, so a worker started from it receives
    that task alone, and a producer using it publishes there. Returns `(app, task)`.
    """
    if not (isinstance(WorkerClass, type) and issubclass(WorkerClass, Task)):
        raise TypeError(
            f"create_worker_from() needs a celery.Task subclass, got {WorkerClass!r}"
        )
    name = WorkerClass.name
    if not isinstance(name, str) or not name:
        raise TypeError(f"{WorkerClass.__qualname__} has no task name: set its 'name'")
    config = (
        importlib.import_module(celery_config) if isinstance(celery_config, str) else celery_config
    )
    app = ContractApp(name, set_as_current=False)
    app.config_from_object(config)
    conf = app.conf
    queue = task_queue(name, conf.task_default_queue_type,
                       conf.get("celery_tasks_delivery_limit", 5),
                       conf.get("celery_tasks_dead_letter", True))
    app.conf.update(
        task_queues=[queue],
        task_default_queue=name,
        task_default_exchange=name,
        task_default_routing_key=name,
        task_routes={name: {"queue": name}},
        task_create_missing_queues=False,
    )
    task = app.register_task(WorkerClass())
    return app, task
