"""The wire format of a task call: Celery protocol-2 task messages, built fast, and the
`rpc://` replies that bring results back.

py-amqp encodes every header of every message in Python, and a Celery task message carries
about twenty (plus the contract's): most of a publish. `MessageFactory` encodes what the
messages of one task share once, with py-amqp's own encoder; each message adds only its
task id, correlation id, argument reprs and publish time (`published_at`, seconds since
the epoch: a worker's queue wait). The messages are ordinary Celery task messages,
carrying the contract headers: any worker runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from struct import pack
from typing import Any

import amqp
from amqp.serialization import dumps
from celery import states

from .contract import PUBLISHED_AT, contract_headers

__all__ = ["MessageFactory", "Prepared", "message_factory", "reply_outcome"]

_PUBLISHED_AT_KEY = bytes([len(PUBLISHED_AT)]) + PUBLISHED_AT.encode() + b"d"


class Prepared(amqp.Message):
    """A message whose AMQP properties were encoded by `MessageFactory`."""

    def __init__(self, body: bytes, encoded_properties: bytes) -> None:
        super().__init__(body)
        self.encoded_properties = encoded_properties

    def _serialize_properties(self) -> bytes:
        return self.encoded_properties


class MessageFactory:
    """Builds the task messages of one task, encoding what they share only once."""

    VARIABLE = ("id", "root_id", "argsrepr", "kwargsrepr")

    def __init__(self, headers: Mapping[str, Any], reply_to: str, embed: Any) -> None:
        constant = {k: v for k, v in headers.items() if k not in self.VARIABLE}
        self.constant_items = dumps("F", [constant])[4:]  # the table without its length
        self.reply_to = _shortstr(reply_to)
        self.embed = embed
        probe = amqp.Message(b"", content_type="application/json", content_encoding="utf-8",
                             application_headers={}, delivery_mode=2, priority=0,
                             correlation_id="x", reply_to=reply_to)
        # flags, content type and encoding, then an empty table (4 bytes): our prefix.
        encoded = probe._serialize_properties()
        self.prefix = encoded[:2 + 1 + len("application/json") + 1 + len("utf-8")]
        self.after_table = bytes([2, 0])  # delivery_mode 2 (persistent), priority 0

    def message(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                extra: Mapping[str, str] | None = None) -> Prepared:
        """One task message; `extra` text headers (a trace context) go in it too."""
        variable = b"".join((_text_item(b"id", task_id), _text_item(b"root_id", task_id),
                             _text_item(b"argsrepr", repr(args)[:1024]),
                             _text_item(b"kwargsrepr", repr(kwargs)[:1024]),
                             _PUBLISHED_AT_KEY, pack(">d", time.time()),
                             *(_text_item(k.encode(), v) for k, v in (extra or {}).items())))
        table = pack(">I", len(self.constant_items) + len(variable))
        properties = b"".join((self.prefix, table, self.constant_items, variable,
                               self.after_table, _shortstr(task_id), self.reply_to))
        body = json.dumps((args, kwargs, self.embed), separators=(",", ":")).encode()
        return Prepared(body, properties)


def message_factory(task: Any, reply_to: str | None) -> MessageFactory:
    """The messages of `task`, replying to `reply_to`: Celery builds one message, whose
    headers and embedded options every message reuses."""
    template, props, (_, _, embed), _ = task.app.amqp.create_task_message(
        "template", task.name, (), {}, reply_to=reply_to,
        time_limit=task.time_limit, soft_time_limit=task.soft_time_limit)
    return MessageFactory({**template, **contract_headers(type(task).contract)},
                           props.get("reply_to") or "", embed)


def reply_outcome(app: Any, body: Any) -> tuple[str, str, Any] | None:
    """(task id, status, value) of a final `rpc://` reply; None for anything else (a
    progress state, a body that is not a result). An error comes back as an exception."""
    if not isinstance(body, dict):
        return None
    task_id, status = body.get("task_id"), body.get("status")
    if task_id is None or status not in states.READY_STATES:
        return None
    value = body.get("result")
    if status != states.SUCCESS:
        value = app.backend.exception_to_python(value)
    return str(task_id), str(status), value


def _text_item(key: bytes, text: str) -> bytes:
    """One table entry holding text, encoded as py-amqp does: key, 'S', length, UTF-8."""
    data = text.encode("utf-8", "surrogatepass")
    return b"".join((bytes([len(key)]), key, b"S", pack(">I", len(data)), data))


def _shortstr(text: str) -> bytes:
    data = text.encode()
    if len(data) > 255:
        raise ValueError(f"an AMQP short string holds 255 bytes at most, got {len(data)}")
    return bytes([len(data)]) + data
