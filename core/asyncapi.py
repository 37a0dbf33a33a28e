"""An AsyncAPI 3.0 document of the contracts: what a producer in any language needs to call
them, and what comes back.

One channel per task: its queue, reached by its topic exchange with the task name as the
routing key (AMQP channel binding); one per dead-letter queue. Each task's message is a
Celery protocol-2 task message: its headers (the task name, a task id, the contract
headers: description, fingerprint, pinned commit), its JSON body `[args, kwargs, embed]`
with a JSON Schema of the arguments from the contract, and the reply: an `rpc://` result
message sent to the queue the call's `reply_to` names, correlated by the task id, whose
`result` is the contract's return type (or the error).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic import TypeAdapter

from .contract import Contract, contract_headers, describe, signature_of
from .topology import DEAD_LETTER_EXCHANGE, dead_letter_name

#: AMQP bindings version of the AsyncAPI bindings used here.
AMQP_BINDING = "0.3.0"
#: The AMQP properties of a call (AMQP properties are not headers: AsyncAPI has no place
#: for them, hence this extension). Values in <> are the caller's.
AMQP_PROPERTIES = {"content_type": "application/json", "content_encoding": "utf-8",
                   "delivery_mode": 2, "correlation_id": "<the id header>",
                   "reply_to": "<the caller's reply queue>"}
ERROR = {"type": "object", "required": ["exc_type", "exc_message"],
         "properties": {"exc_type": {"type": "string", "description": "the error's class"},
                        "exc_message": {"description": "the error's arguments"},
                        "exc_module": {"type": "string"}}}


def document(contracts: dict[str, type[Contract]], version: str, commit: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of `contracts` (celery_tasks `version`, at `commit`)."""
    schemas: dict[str, Any] = {"Error": ERROR}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, cls in contracts.items():
        call, result = f"{name}.call", f"{name}.result"
        messages[call] = _call_message(cls, schemas)
        messages[result] = _result_message(cls, schemas)
        channels[name] = {
            "address": name,
            "title": f"the queue of {name}",
            "description": f"{describe(cls)}: {(cls.run.__doc__ or '').strip()}",
            "messages": {"call": {"$ref": f"#/components/messages/{call}"}},
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": AMQP_BINDING,
                                  "exchange": {"name": name, "type": "topic", "durable": True,
                                               "autoDelete": False, "vhost": "/"}}},
        }
        channels[f"{name}.dead"] = {
            "address": dead_letter_name(name),
            "title": f"the dead-letter queue of {name}",
            "description": f"{name} calls no worker could complete (refused, failed, timed "
                           f"out), dead-lettered by exchange {DEAD_LETTER_EXCHANGE}",
            "messages": {"call": {"$ref": f"#/components/messages/{call}"}},
            "bindings": {"amqp": {"is": "queue", "bindingVersion": AMQP_BINDING,
                                  "queue": {"name": dead_letter_name(name), "durable": True,
                                            "exclusive": False, "autoDelete": False,
                                            "vhost": "/"}}},
        }
        channels[f"{name}.reply"] = {
            "address": None,
            "title": f"where {name} results go",
            "description": "the queue the call's AMQP reply_to property names, declared by "
                           "the caller (with the rpc:// result backend; a producer's user may "
                           "declare only queues named celery_tasks.reply.* or by a UUID)",
            "messages": {"result": {"$ref": f"#/components/messages/{result}"}},
        }
        operations[f"call_{name}"] = {
            "action": "send",
            "title": f"call {name}",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/call"}],
            "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": AMQP_BINDING}},
            "reply": {"channel": {"$ref": f"#/channels/{name}.reply"},
                      "messages": [{"$ref": f"#/channels/{name}.reply/messages/result"}]},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "celery_tasks contracts", "version": version,
                 "description": "The task contracts shared by producers and workers "
                 f"(celery_tasks {commit}). Each call is a Celery protocol-2 task message, "
                 "published to the task's exchange with the task name as routing key, with "
                 "the AMQP properties x-amqp-properties of its message gives: content type "
                 "application/json, encoding utf-8, delivery mode 2, the task id as "
                 "correlation_id and the caller's reply queue as reply_to (an AMQP "
                 "property, not a header)."},
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "localhost:5672", "protocol": "amqp",
                                 "protocolVersion": "0-9-1",
                                 "description": "RabbitMQ (RABBITMQ_HOST, RABBITMQ_PORT)"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _schema(annotation: Any, schemas: dict[str, Any]) -> Any:
    """A JSON Schema of `annotation`, its named parts moved to components/schemas."""
    if annotation is inspect.Parameter.empty:
        return {}
    found = TypeAdapter(annotation).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(found.pop("$defs", {}))
    return found


def _call_message(cls: type[Contract], schemas: dict[str, Any]) -> dict[str, Any]:
    sig = signature_of(cls)
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    args = {"type": "array", "minItems": required, "maxItems": len(positional),
            "items": [{**_schema(p.annotation, schemas), "title": p.name} for p in positional],
            "description": "the arguments, in the contract's order"}
    kwargs = {"type": "object", "additionalProperties": False,
              "properties": {p.name: _schema(p.annotation, schemas)
                             for p in sig.parameters.values()
                             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)},
              "required": [p.name for p in sig.parameters.values()
                           if p.kind is p.KEYWORD_ONLY and p.default is p.empty],
              "description": "arguments by name (usually empty: give them in args)"}
    embed = {"type": "object", "description": "Celery's callbacks, errbacks, chain, chord "
             "(null for a plain call)",
             "properties": {key: {"type": ["array", "object", "null"]}
                            for key in ("callbacks", "errbacks", "chain", "chord")}}
    headers = contract_headers(cls)
    return {
        "name": f"{cls.name}.call",
        "title": f"a call of {cls.name}",
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/id"},
        "headers": {
            "type": "object",
            "required": ["task", "id", "lang"],
            "properties": {
                "task": {"const": cls.name, "description": "the task name"},
                "id": {"type": "string", "format": "uuid",
                       "description": "the task id, also the AMQP correlation_id"},
                "lang": {"const": "py", "description": "Celery's protocol 2 marker"},
                "root_id": {"type": "string"},
                "parent_id": {"type": ["string", "null"]},
                "retries": {"type": "integer", "minimum": 0},
                "timelimit": {"type": "array", "items": [{"type": ["number", "null"]}] * 2,
                              "description": "[soft, hard] time limits in seconds"},
                "contract": {"const": headers["contract"], "description": "the contract's "
                             "description (JSON text): with it the worker checks that this "
                             "caller's contract can call its own, else ContractMismatch"},
                "contract_fingerprint": {"const": headers["contract_fingerprint"]},
                "contract_commit": {"type": "string",
                                    "description": "the caller's celery_tasks commit"},
            },
        },
        "x-amqp-properties": AMQP_PROPERTIES,
        "payload": {"type": "array", "minItems": 3, "maxItems": 3,
                    "items": [args, kwargs, embed],
                    "description": "Celery protocol 2 body: [args, kwargs, embed]"},
        "bindings": {"amqp": {"contentEncoding": "utf-8", "bindingVersion": AMQP_BINDING}},
    }


def _result_message(cls: type[Contract], schemas: dict[str, Any]) -> dict[str, Any]:
    returns = _schema(signature_of(cls).return_annotation, schemas)
    return {
        "name": f"{cls.name}.result",
        "title": f"the result of a {cls.name} call",
        "contentType": "application/json",
        "correlationId": {"location": "$message.payload#/task_id"},
        "payload": {
            "type": "object",
            "required": ["task_id", "status", "result"],
            "properties": {
                "task_id": {"type": "string", "description": "the call's task id"},
                "status": {"enum": ["SUCCESS", "FAILURE", "RETRY", "REVOKED"]},
                "result": {"description": "the return value (status SUCCESS), else the error",
                           "anyOf": [returns, {"$ref": "#/components/schemas/Error"}]}
                if returns else {},
                "traceback": {"type": ["string", "null"]},
                "children": {"type": "array"},
                "date_done": {"type": ["string", "null"]},
            },
        },
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
