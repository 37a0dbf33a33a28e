"""Callers that do not vendor celery_tasks (docs/callers.md): a plain Celery app calling by
name, and a call built from the AsyncAPI document alone with a bare AMQP client."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import amqp
import jsonschema
import pytest
from celery import Celery
from kombu import Exchange, Queue

from harness.processes import PRODUCER_DIR, ROOT, Worker, clean_env
from tests.conftest import Broker

SCHEMA = json.loads((ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """`python -m celery_tasks asyncapi`, as a user runs it from producer/."""
    out = subprocess.run([sys.executable, "-m", "celery_tasks", "asyncapi"], cwd=PRODUCER_DIR,
                         env=clean_env({"CELERY_TASKS_ENV_FILE": ""}), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_the_asyncapi_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert list(validator.iter_errors(document)) == []
    broken = copy.deepcopy(document)
    broken["operations"]["call_divide"]["action"] = "publish"  # AsyncAPI 2's word
    assert list(validator.iter_errors(broken))  # the check can fail


def test_the_document_has_a_channel_per_queue_and_dead_letter_queue(
    document: dict[str, Any]
) -> None:
    from celery_tasks.tasks import CONTRACTS

    for name in CONTRACTS:
        queue = document["channels"][name]
        assert queue["address"] == name
        assert queue["bindings"]["amqp"]["exchange"] == {
            "name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
        assert document["channels"][f"{name}.dead"]["address"] == f"{name}.dead"
        call = document["components"]["messages"][f"{name}.call"]
        assert call["headers"]["properties"]["task"] == {"const": name,
                                                         "description": "the task name"}
        assert "contract_fingerprint" in call["headers"]["properties"]


def pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """`value` against a schema of the document (its $refs into components resolved)."""
    jsonschema.Draft7Validator({**schema, "components": doc["components"]}).validate(value)


@pytest.fixture
def bare_channel(broker: Broker) -> Iterator[Any]:
    """A bare AMQP 0-9-1 client on the test vhost, as a producer in any language has."""
    node = broker.node
    conn = amqp.Connection(host=f"{node.host}:{node.port}", userid=node.user,
                           password=node.password, virtual_host=broker.vhost)
    conn.connect()
    try:
        yield conn.channel()
    finally:
        conn.close()


def test_a_call_built_from_the_document_alone_runs_on_a_real_worker(
    document: dict[str, Any], start_worker: Callable[..., Worker], bare_channel: Any
) -> None:
    start_worker("unique_magic_task", pool="threads")
    channel = document["channels"]["unique_magic_task"]
    call = pointer(document, channel["messages"]["call"]["$ref"])
    headers = {key: prop["const"] for key, prop in call["headers"]["properties"].items()
               if "const" in prop}
    task_id = headers["id"] = str(uuid.uuid4())
    embed = {key: None for key in call["payload"]["items"][2]["properties"]}
    with pytest.raises(jsonschema.ValidationError):  # the document refuses a short call
        validate(document, call["payload"], [[1, 2], {}, embed])
    body = [[1, 2, 3], {}, embed]
    validate(document, call["headers"], headers)
    validate(document, call["payload"], body)
    # A reply queue named as the document says a producer's user may declare one.
    reply = f"celery_tasks.reply.{uuid.uuid4()}"
    bare_channel.queue_declare(reply, exclusive=True, auto_delete=True)
    properties = dict(call["x-amqp-properties"])  # the AMQP properties, not headers
    assert properties["correlation_id"] == "<the id header>"
    assert properties["reply_to"] == "<the caller's reply queue>"
    properties.update(correlation_id=task_id, reply_to=reply)
    operation = document["operations"]["call_unique_magic_task"]
    assert properties["delivery_mode"] == operation["bindings"]["amqp"]["deliveryMode"]
    assert properties["content_type"] == call["contentType"]
    bare_channel.basic_publish(
        amqp.Message(json.dumps(body).encode(), application_headers=headers, **properties),
        exchange=channel["bindings"]["amqp"]["exchange"]["name"],
        routing_key=channel["address"])
    result = pointer(document, document["channels"]["unique_magic_task.reply"]["messages"]
                     ["result"]["$ref"])
    deadline = time.monotonic() + 60
    while (got := bare_channel.basic_get(reply, no_ack=True)) is None:
        assert time.monotonic() < deadline, "no reply within 60 s"
        time.sleep(0.05)
    answer = json.loads(got.body)
    validate(document, result["payload"], answer)
    assert (answer["task_id"], answer["status"], answer["result"]) == (task_id, "SUCCESS", 6)


@pytest.fixture
def plain_app(broker: Broker) -> Iterator[Callable[..., Celery]]:
    """Plain Celery 5.7 apps, knowing nothing but the broker, the task names and `conf`."""
    node = broker.node
    url = (f"amqp://{quote(node.user, safe='')}:{quote(node.password, safe='')}@"
           f"{node.host}:{node.port}/{quote(broker.vhost, safe='')}")
    apps: list[Celery] = []

    def make(**conf: Any) -> Celery:
        app = Celery("plain", broker=url, backend="rpc://", set_as_current=False)
        app.conf.update(conf)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def test_a_plain_celery_app_calls_a_contract_by_name_as_documented(
    plain_app: Callable[..., Celery], start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("unique_magic_task", pool="threads")
    app = plain_app()
    route = {"exchange": "unique_magic_task", "routing_key": "unique_magic_task"}
    assert app.send_task("unique_magic_task", (1, 2, 3), **route).get(timeout=30) == 6
    later = app.send_task("unique_magic_task", (1, 2, 4), countdown=1, **route)
    assert later.get(timeout=30) == 7
    refused = app.send_task("unique_magic_task", (1, 2), **route)
    error = refused.get(timeout=30, propagate=False)
    assert type(error).__name__ == "ContractViolation"
    assert "missing a required argument: 'arg3'" in str(error)
    deadline = time.monotonic() + 10  # the worker logs after it replied
    while f"{refused.id}] raised expected: ContractViolation" not in worker.log:
        assert time.monotonic() < deadline, worker.log
        time.sleep(0.05)
    assert "Traceback" not in worker.log  # the refusal is one line there


def test_the_usual_queue_form_needs_the_queue_declared_as_it_exists(
    plain_app: Callable[..., Celery], start_worker: Callable[..., Worker]
) -> None:
    start_worker("unique_magic_task", pool="threads")
    with pytest.raises(Exception, match="inequivalent arg 'type'"):  # unconfigured
        plain_app().send_task("unique_magic_task", (1, 2, 3), queue="unique_magic_task")
    names = ("unique_magic_task", "divide")  # as docs/callers.md writes it
    app = plain_app(task_queues=[Queue(name, Exchange(name, type="topic"), routing_key=name,
                                       no_declare=True) for name in names])
    assert app.send_task("unique_magic_task", (1, 2, 3),
                         queue="unique_magic_task").get(timeout=30) == 6


def test_the_docs_show_the_forms_the_tests_run() -> None:
    text = (ROOT / "docs" / "callers.md").read_text()
    for form in ('exchange="unique_magic_task", routing_key="unique_magic_task"',
                 'Exchange(name, type="topic"), routing_key=name,\n'
                 "                                  no_declare=True)",
                 'queue="unique_magic_task").get()   # 6'):
        assert form in text, form
