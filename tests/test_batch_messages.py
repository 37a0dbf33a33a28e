"""The batch path encodes shared message properties once: the bytes must be py-amqp's own."""

from __future__ import annotations

import json
import time
from typing import Any

import amqp
import pytest

from celery_tasks.core.wire import MessageFactory
from celery_tasks.publisher.confirms import Framer

HEADERS: dict[str, Any] = {"lang": "py", "task": "divide", "id": None, "shadow": None, "eta": None,
           "retries": 0, "timelimit": [300, 330], "root_id": None, "parent_id": None,
           "argsrepr": None, "kwargsrepr": None, "ignore_result": False,
           "stamped_headers": None, "stamps": {}, "celery_tasks_fingerprint": "0123abcd",
           "celery_tasks_description": '{"name":"divide"}'}


def decoded(encoded: bytes) -> dict:
    message = amqp.Message()
    message._load_properties(60, encoded, 0)  # 60: the basic class, as on the wire
    return message.properties


@pytest.mark.parametrize("reply_to", ["celery_tasks.reply.abc", ""])
def test_prepared_messages_carry_exactly_what_py_amqp_would_encode(reply_to: str) -> None:
    factory = MessageFactory(HEADERS, reply_to, {"callbacks": None})
    args, kwargs = [1, "two ü"], {"b": 2.5}
    before = time.time()
    ours = factory.message("task-1", args, kwargs)
    mine = decoded(ours._serialize_properties())
    published_at = mine["application_headers"]["published_at"]
    assert before <= published_at <= time.time()  # when it was made: the queue wait's start
    theirs = amqp.Message(
        b"", content_type="application/json", content_encoding="utf-8", delivery_mode=2,
        priority=0, correlation_id="task-1", reply_to=reply_to,
        application_headers={**HEADERS, "id": "task-1", "root_id": "task-1",
                             "argsrepr": repr(args), "kwargsrepr": repr(kwargs),
                             "published_at": published_at})
    assert mine == decoded(theirs._serialize_properties())
    assert json.loads(ours.body) == [args, kwargs, {"callbacks": None}]


def test_the_argument_reprs_are_capped() -> None:
    message = MessageFactory(HEADERS, "", None).message("t", ["x" * 5000], {})
    headers = decoded(message._serialize_properties())["application_headers"]
    assert len(headers["argsrepr"]) == 1024 and headers["id"] == headers["root_id"] == "t"


class _Collect:
    """Where py-amqp's frame writer puts its bytes."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: Any) -> None:
        self.written += bytes(data)


def py_amqp_frames(message: amqp.Message, frame_max: int, channel_id: int) -> bytes:
    """The bytes py-amqp writes for one mandatory basic.publish of `message` to queue `q`."""
    from types import SimpleNamespace

    from amqp import spec
    from amqp.method_framing import frame_writer
    from amqp.serialization import dumps

    connection, sink = SimpleNamespace(frame_max=frame_max, bytes_sent=0), _Collect()
    frame_writer(connection, sink)(1, channel_id, spec.Basic.Publish,
                                   dumps("Bssbb", (0, "", "q", True, False)), message)
    return sink.written


@pytest.mark.parametrize("body_size", [10, 4000, 20_000])
def test_publish_frames_are_py_amqps_own(body_size: int) -> None:
    # 4,000 bytes with the properties overflow a 4,096-byte frame: py-amqp's other path;
    # 20,000 bytes take several body frames.
    message = MessageFactory(HEADERS, "r", None).message("t", ["x" * body_size], {})
    for frame_max in (4096, 131_072):
        ours = Framer(3, frame_max, "", "q", mandatory=True).frames(message)
        assert ours == py_amqp_frames(message, frame_max, 3)


def test_a_trace_context_travels_as_one_more_text_header() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message = MessageFactory(HEADERS, "", None).message("t", [1], {}, {"traceparent": parent})
    headers = decoded(message._serialize_properties())["application_headers"]
    assert headers["traceparent"] == parent and headers["id"] == "t"
    plain = MessageFactory(HEADERS, "", None).message("t", [1], {})
    assert "traceparent" not in decoded(plain._serialize_properties())["application_headers"]
