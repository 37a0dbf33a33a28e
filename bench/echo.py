"""`python -m bench.echo QUEUE [reliable]`: the least a worker can do, in raw py-amqp.

Consumes QUEUE with late acknowledgement, replies with the sum of the arguments to the
message's reply_to, then acknowledges. With it, the bench measures the round-trip floor
of a queue type on this machine, below any task framework. `reliable` does what an
at-least-once worker must: its reply is persistent and confirmed before the task message
is acknowledged (else a broker crash in between could lose the result of a task done).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import amqp

from bench.__main__ import connect

RELIABLE = sys.argv[2:3] == ["reliable"]
conn = connect()
conn.connect()
channel = conn.channel()
channel.basic_qos(0, 8, False)
replies = conn.channel()
confirmed, sent = [0], [0]
if RELIABLE:
    replies.confirm_select()
    replies.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, tag))


def on_message(message: Any) -> None:
    args = json.loads(message.body)
    reply = amqp.Message(json.dumps(sum(args)), delivery_mode=2 if RELIABLE else 1)
    replies.basic_publish(reply, exchange="", routing_key=message.properties["reply_to"])
    sent[0] += 1
    while RELIABLE and confirmed[0] < sent[0]:
        conn.drain_events(timeout=10)
    channel.basic_ack(message.delivery_tag)


channel.basic_consume(sys.argv[1], callback=on_message)
print("echo ready", flush=True)
while True:
    conn.drain_events()
