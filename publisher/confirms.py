"""Publishing on one channel in confirm mode, many messages to a socket write: which
messages RabbitMQ has confirmed, refused or returned, and the frames themselves."""

from __future__ import annotations

from collections import deque
from struct import pack
from typing import Any

from amqp import spec
from amqp.serialization import dumps

from ..core.wire import Prepared

__all__ = ["FLUSH_BYTES", "Confirms", "Framer", "Publisher"]

#: Bytes of publishes buffered before they are written to the socket in one go.
FLUSH_BYTES = 64 * 1024


FRAME_END = b"\xce"



class Confirms:
    """The messages of one channel that RabbitMQ has not confirmed yet, by delivery tag.

    Delivery tags grow by one per message, so confirms settle from the front of a queue:
    each message is settled once, whatever the window size, and nothing stays behind.
    """

    def __init__(self) -> None:
        self.pending: dict[int, str] = {}  # delivery tag -> task id
        self.order: deque[int] = deque()  # the pending tags (and some settled), ascending
        self.next_tag = 1

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, task_id: str) -> None:
        """Record the next message, before it is published: its confirm may come at once."""
        self.pending[self.next_tag] = task_id
        self.order.append(self.next_tag)
        self.next_tag += 1

    def settle(self, tag: int, multiple: bool) -> list[str]:
        """The task ids a confirm (or nack) of `tag` settles."""
        if not multiple:
            settled = [self.pending.pop(tag)] if tag in self.pending else []
        else:
            settled = []
            while self.order and self.order[0] <= tag:
                task_id = self.pending.pop(self.order.popleft(), None)
                if task_id is not None:
                    settled.append(task_id)
        while self.order and self.order[0] not in self.pending:  # keep `order` short
            self.order.popleft()
        return settled


class Framer:
    """Encodes the basic.publish frames of one channel, exchange and routing key, byte for
    byte as py-amqp's frame writer does, so that many publishes share one socket write.

    py-amqp writes each publish on its own, after a zero-timeout read of the socket (for a
    `connection.blocked` notice): two system calls per message, most of a publish's time.
    """

    def __init__(self, channel_id: int, frame_max: int, exchange: str, routing_key: str,
                 mandatory: bool) -> None:
        method = pack(">HH", *spec.Basic.Publish) + dumps(
            "Bssbb", (0, exchange, routing_key, mandatory, False))
        self.method = pack(">BHI", 1, channel_id, len(method)) + method + FRAME_END
        self.channel_id = channel_id
        self.chunk = frame_max - 8  # a frame's payload, as py-amqp splits bodies

    def frames(self, message: Prepared) -> bytes:
        body = message.body
        header = pack(">HHQ", spec.Basic.Publish[0], 0, len(body)) + message.encoded_properties
        parts = [self.method, pack(">BHI", 2, self.channel_id, len(header)), header, FRAME_END]
        for start in range(0, len(body), self.chunk):
            piece = body[start:start + self.chunk]
            parts += (pack(">BHI", 3, self.channel_id, len(piece)), piece, FRAME_END)
        return b"".join(parts)


class Publisher:
    """One channel in confirm mode; tracks which messages RabbitMQ has confirmed.

    Messages are mandatory: one that no queue took (its queue was deleted under the
    stream) comes back, then is confirmed; it counts as refused, not confirmed, and
    `unroutable` tells the stream to declare the queue again before it publishes again.

    Publishes are buffered and written together (`flush`): the stream flushes whenever
    the buffer holds FLUSH_BYTES, before it waits for anything from the broker, and (unless
    its calls never wait) before it takes the next call.
    """

    def __init__(self, conn: Any, confirmed: set[str], exchange: str, routing_key: str) -> None:
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.transport = conn.connection.transport
        self.framer = Framer(self.channel.channel_id, conn.connection.frame_max, exchange,
                              routing_key, mandatory=True)
        self.confirms = Confirms()
        self.refused: list[str] = []
        self.returned: set[str] = set()  # came back unroutable; their confirm is to come
        self.unroutable = False
        self.confirmed = confirmed  # the stream's set of unconfirmed calls, emptied here
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        settled = self.confirms.settle(delivery_tag, multiple)
        if self.returned:  # confirmed, but not queued: to publish again
            back = [task_id for task_id in settled if task_id in self.returned]
            self.returned.difference_update(back)
            self.refused.extend(back)
            settled = [task_id for task_id in settled if task_id not in back]
        self.confirmed.difference_update(settled)

    def _on_nack(self, delivery_tag: int, multiple: bool, *_: Any) -> None:
        settled = self.confirms.settle(delivery_tag, multiple)
        self.returned.difference_update(settled)
        self.refused.extend(settled)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str,
                   message: Any) -> None:
        task_id = message.properties.get("correlation_id")
        if task_id is not None:
            self.returned.add(task_id)
            self.unroutable = True

    def publish(self, task_id: str, message: Prepared) -> None:
        """Buffer one publish; `flush` writes it."""
        self.confirms.add(task_id)
        frames = self.framer.frames(message)
        self.buffer.append(frames)
        self.buffered += len(frames)

    def flush(self) -> None:
        """Write what was published since the last flush, in one write."""
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer, self.buffered = [], 0
        self.transport.write(data)
