"""The harness starts the services it needs in containers, uses them, and removes them:
`make test` on a machine with Docker and none of RabbitMQ, Redis or PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import redis

from harness.services import running

LOCAL_PORTS = {5672, 6379, 5432}


def test_containers_mode_starts_every_service_and_removes_it(docker_client: Any) -> None:
    with running({"HARNESS_SERVICES": "containers"}) as services:
        ids = [container.id for container in services.containers]
        assert len(ids) == 3
        node = services.rabbitmq
        assert node.port not in LOCAL_PORTS and node.version().startswith("4.3")
        client = redis.Redis.from_url(services.redis(15))
        assert client.ping() and services.redis_url.rsplit(":", 1)[1] not in map(str, LOCAL_PORTS)
        client.close()
        with psycopg.connect(services.postgres_url) as conn:
            assert conn.execute("select current_database()").fetchone() == ("test",)
        assert ":5432/" not in services.postgres_url
    left = {c.id for c in docker_client.containers.list(all=True)}
    assert not left & set(ids)


def test_local_mode_uses_the_given_addresses_and_starts_nothing() -> None:
    env = {"HARNESS_SERVICES": "local",
           "HARNESS_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
           "HARNESS_REDIS_URL": "redis://127.0.0.1:2", "HARNESS_POSTGRES_URL":
           "postgresql://postgres@127.0.0.1:3/test"}
    with running(env) as services:
        assert services.containers == []
        assert (services.rabbitmq.port, services.redis_url, services.postgres_url) == (
            1, "redis://127.0.0.1:2", "postgresql://postgres@127.0.0.1:3/test")
