"""Dramatiq with RabbitMQ, results in Redis: the peer a user might pick instead."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RabbitmqBroker(url=os.environ["BENCH_BROKER_URL"], confirm_delivery=True)
broker.add_middleware(Results(backend=RedisBackend(url=os.environ["BENCH_REDIS_URL"])))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench_dramatiq", store_results=True, max_retries=0)
def add(arg1: int, arg2: int, arg3: int) -> int:
    return arg1 + arg2 + arg3
