"""Celery's remote control (ping, inspect), with a node queue of its own per connection.

A worker's control queue (`NAME.celery.pidbox`) is exclusive. When the node a worker is
connected to dies, the dead connection's queue stays "locked" until the cluster declares
that node down, and the worker, reconnecting to a survivor, was refused its queue (405) and
exited. Here each connection listens on a queue of its own: commands reach it all the same,
by the fanout exchange, and replies go to the asker's reply queue as before.
"""

from __future__ import annotations

import uuid

from celery.app.control import Control
from kombu import Queue
from kombu.pidbox import Mailbox

__all__ = ["ConnectionMailbox", "ContractControl"]


class ConnectionMailbox(Mailbox):
    """Celery's control mailbox, whose node queue is new for each connection."""

    def get_queue(self, hostname: str) -> Queue:
        queue = super().get_queue(hostname)
        return Queue(f"{queue.name}.{uuid.uuid4().hex[:12]}", exchange=queue.exchange,
                     durable=queue.durable, exclusive=queue.exclusive,
                     auto_delete=queue.auto_delete, expires=queue.expires,
                     message_ttl=queue.message_ttl)


class ContractControl(Control):
    """Celery's remote control, on `ConnectionMailbox`."""

    Mailbox = ConnectionMailbox
