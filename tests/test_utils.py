"""create_worker_from: one app per task, its own queue, and nothing published for a bad call."""

from __future__ import annotations

import pytest
from celery import Task

from celery_tasks.core.errors import BadArguments, ImplementationError
from celery_tasks.tasks import CountPrimesTask, MagicCeleryTask
from celery_tasks.utils import create_worker_from


def test_the_apps_only_queue_is_named_after_the_task() -> None:
    app, task = create_worker_from(CountPrimesTask)
    assert [q.name for q in app.conf.task_queues] == ["count_primes"]
    assert app.conf.task_default_queue == "count_primes"
    assert app.amqp.router.route({}, "count_primes")["queue"].name == "count_primes"
    assert task.name == "count_primes" and app.tasks["count_primes"] is task


@pytest.mark.parametrize("not_a_task", [object, 42, MagicCeleryTask(), "unique_magic_task"])
def test_a_non_task_is_a_type_error_not_an_assert(not_a_task: object) -> None:
    with pytest.raises(TypeError, match=r"needs a celery\.Task subclass"):
        create_worker_from(not_a_task)  # type: ignore[arg-type]


def test_a_task_without_a_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="has no task name"):
        create_worker_from(Task)


def test_a_bad_call_raises_before_any_connection_is_tried() -> None:
    # The broker here does not exist: reaching it would hang or fail differently.
    _, task = create_worker_from(MagicCeleryTask)
    task.app.conf.broker_url = "amqp://nobody:nothing@127.0.0.1:1//"
    with pytest.raises(BadArguments, match="missing a required argument"):
        task.delay(1, 2)


def test_worker_main_refuses_a_contract_stub() -> None:
    app, _ = create_worker_from(MagicCeleryTask)
    with pytest.raises(ImplementationError, match="is the contract stub"):
        app.worker_main(["worker"])


def test_safe_delivery_defaults() -> None:
    app, _ = create_worker_from(MagicCeleryTask)
    conf = app.conf
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["confirm_publish"] is True
