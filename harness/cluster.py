"""RabbitMQ 4.3 nodes in containers, configured as the compose stacks configure theirs (the
same entrypoint, users and conf.d files), with AMQP published on 127.0.0.1: one node, or a
cluster of several, for processes on this host (the bench's replication rows)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .processes import ROOT
from .services import ServiceUnavailable, docker_client

IMAGE = "rabbitmq:4.3-management"
CONFIG = ROOT / "docker" / "rabbitmq"
USER, PASSWORD = "bench", "bench-p@ss"


@dataclass(frozen=True)
class Nodes:
    """Where the nodes listen on this host, and the administrator's credentials."""

    addresses: tuple[str, ...]  # host:port each

    def settings(self, vhost: str = "/") -> dict[str, str]:
        """celery_tasks' settings for these nodes (every node, for a cluster)."""
        return {"RABBITMQ_HOST": ",".join(self.addresses), "RABBITMQ_USER": USER,
                "RABBITMQ_PASSWORD": PASSWORD, "RABBITMQ_VHOST": vhost}


def _volumes(cluster: bool) -> dict[str, dict[str, str]]:
    files = {"entrypoint.sh": "/usr/local/bin/celery-tasks-entrypoint.sh",
             "celery-tasks.conf": "/etc/rabbitmq/conf.d/30-celery-tasks.conf"}
    if cluster:
        files["cluster.conf"] = "/etc/rabbitmq/conf.d/40-cluster.conf"
    return {str(CONFIG / name): {"bind": path, "mode": "ro"} for name, path in files.items()}


@contextlib.contextmanager
def rabbitmq_nodes(size: int, image: str = IMAGE, timeout: float = 180) -> Iterator[Nodes]:
    """`size` RabbitMQ nodes (1: a single node; 3: a cluster, rabbitmq-1 to -3, as
    docker/rabbitmq/cluster.conf names them) on a network of their own; removed with it."""
    import docker

    client = docker_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ServiceUnavailable(f"image {image} is missing (run 'make engine')") from None
    network = client.networks.create(f"ct-nodes-{uuid.uuid4().hex[:8]}")
    roles = {f"RABBITMQ_{role}_{key}": value for role in ("ADMIN", "PRODUCER", "WORKER")
             for key, value in (("USER", f"{role.lower()}-{USER}"), ("PASSWORD", PASSWORD))}
    roles["RABBITMQ_ADMIN_USER"] = USER
    containers: list[Any] = []
    try:
        for index in range(1, size + 1):
            name = f"rabbitmq-{index}"  # the name the others resolve it by, on this network
            endpoint = client.api.create_endpoint_config(aliases=[name])
            containers.append(client.containers.run(
                image, detach=True, hostname=name, network=network.name,
                networking_config={network.name: endpoint},
                entrypoint=["celery-tasks-entrypoint.sh"], command=["rabbitmq-server"],
                environment={**roles, "CELERY_TASKS_ERLANG_COOKIE": network.name},
                volumes=_volumes(size > 1), ports={"5672/tcp": ("127.0.0.1", None)},
                labels={"celery-tasks.harness": "nodes"}))
        addresses = tuple(f"127.0.0.1:{_port(c)}" for c in containers)
        _await_cluster(containers, size, timeout)
        yield Nodes(addresses)
    finally:
        for container in containers:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        with contextlib.suppress(Exception):
            network.remove()


def _port(container: Any) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"]["5672/tcp"][0]["HostPort"])


def _await_cluster(containers: list[Any], size: int, timeout: float) -> None:
    """Until every node accepts AMQP and the first counts `size` nodes running."""
    deadline = time.monotonic() + timeout
    for container in containers:
        while container.exec_run(["rabbitmq-diagnostics", "-q", "check_port_connectivity"])[0]:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                raise ServiceUnavailable(f"RabbitMQ node did not start:\n{logs}")
            time.sleep(1)
    code, out = containers[0].exec_run(["rabbitmqctl", "await_online_nodes", str(size),
                                        "--timeout", str(int(timeout))])
    if code != 0:
        raise ServiceUnavailable(f"the cluster did not form: {out.decode(errors='replace')}")
