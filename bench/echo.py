"""`python -m bench.echo QUEUE`: the least a worker can do, in raw py-amqp.

Consumes QUEUE with late acknowledgement, replies with the sum of the arguments to the
message's reply_to, then acknowledges. With it, the bench measures the round-trip floor
of a queue type on this machine, below any task framework.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import amqp

from bench.__main__ import VHOST

conn = amqp.Connection("127.0.0.1:5672", virtual_host=VHOST)
conn.connect()
channel = conn.channel()
channel.basic_qos(0, 8, False)


def on_message(message: Any) -> None:
    args = json.loads(message.body)
    reply = amqp.Message(json.dumps(sum(args)))
    channel.basic_publish(reply, exchange="", routing_key=message.properties["reply_to"])
    channel.basic_ack(message.delivery_tag)


channel.basic_consume(sys.argv[1], callback=on_message)
print("echo ready", flush=True)
while True:
    conn.drain_events()
