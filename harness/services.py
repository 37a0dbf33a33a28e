"""The services the harness runs against: RabbitMQ, Redis and PostgreSQL.

Tests and the bench find them here, never at addresses of their own:

- `HARNESS_RABBITMQ_URL` (default `amqp://guest:guest@127.0.0.1:5672/`): a RabbitMQ node,
  with a user that may make vhosts and users;
- `HARNESS_RABBITMQCTL` (default `rabbitmqctl`): the command that controls that node, such
  as `docker exec NAME rabbitmqctl`;
- `HARNESS_REDIS_URL` (default `redis://127.0.0.1:6379`): Redis (tests use database 15);
- `HARNESS_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/test`): PostgreSQL;
- `HARNESS_SERVICES` (default `auto`): where services no variable names come from.

`HARNESS_SERVICES=auto` takes a service that no variable names from 127.0.0.1 when it
answers there, and otherwise starts it in a container of the Docker engine (DOCKER_HOST);
`local` never starts a container; `containers` always does (RabbitMQ 4.3, Redis, PostgreSQL:
the images `HARNESS_RABBITMQ_IMAGE`, `HARNESS_REDIS_IMAGE`, `HARNESS_POSTGRES_IMAGE`).
Containers publish their ports on 127.0.0.1 only and are removed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DEFAULTS = {
    "HARNESS_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "HARNESS_RABBITMQCTL": "rabbitmqctl",
    "HARNESS_REDIS_URL": "redis://127.0.0.1:6379",
    "HARNESS_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "HARNESS_SERVICES": "auto",
    "HARNESS_RABBITMQ_IMAGE": "rabbitmq:4.3-management",
    "HARNESS_REDIS_IMAGE": "redis:7",
    "HARNESS_POSTGRES_IMAGE": "postgres:15",
}
MODES = ("auto", "local", "containers")


class ServiceUnavailable(RuntimeError):
    """A service the run needs is neither reachable nor startable; the message says why."""


@dataclass(frozen=True)
class RabbitMQ:
    """One RabbitMQ node: where it listens, an administrator's credentials, its control."""

    host: str
    port: int
    user: str
    password: str
    ctl: tuple[str, ...] = ("rabbitmqctl",)
    #: Where it came from, for messages: the variable, 127.0.0.1 or a container.
    origin: str = ""

    @classmethod
    def from_url(cls, url: str, ctl: str, origin: str = "") -> RabbitMQ:
        parts = urlsplit(url)
        if parts.scheme not in {"amqp", "pyamqp"} or not parts.hostname:
            raise ServiceUnavailable(
                f"HARNESS_RABBITMQ_URL must be amqp://user:password@host:port/, got {url!r}")
        return cls(parts.hostname, parts.port or 5672, unquote(parts.username or "guest"),
                   unquote(parts.password or "guest"), tuple(shlex.split(ctl)), origin)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, vhost: str = "/") -> str:
        """An amqp:// URL for `vhost`, every part quoted."""
        return (f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
                f"{self.host}:{self.port}/{quote(vhost, safe='')}")

    def settings(self, vhost: str = "/") -> dict[str, str]:
        """The producer's and workers' settings (celery_tasks' variables) for this node."""
        return {"RABBITMQ_HOST": self.host, "RABBITMQ_PORT": str(self.port),
                "RABBITMQ_USER": self.user, "RABBITMQ_PASSWORD": self.password,
                "RABBITMQ_VHOST": vhost}

    def rabbitmqctl(self, *args: str, check: bool = True,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the node's control command with `args`; raise on failure if `check`."""
        return subprocess.run([*self.ctl, *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def answers(self, timeout: float = 3.0) -> bool:
        """True if an AMQP connection with these credentials opens."""
        from kombu import Connection

        conn = Connection(self.url(), connect_timeout=timeout)
        try:
            conn.ensure_connection(max_retries=1, interval_start=0.2)
        except Exception:  # refused, reset, timed out, bad credentials: it does not answer
            return False
        finally:
            conn.release()
        return True

    def version(self) -> str:
        """The node's RabbitMQ version, as it announces itself to clients."""
        import amqp

        with amqp.Connection(self.address, userid=self.user, password=self.password) as conn:
            return str(conn.server_properties.get("version", "unknown"))


@dataclass(frozen=True)
class Services:
    """What one run uses; `containers` are the ones it started (and removes)."""

    rabbitmq: RabbitMQ
    redis_url: str
    postgres_url: str
    containers: list[Any] = field(default_factory=list)

    def redis(self, db: int) -> str:
        """A redis:// URL for database `db`."""
        return f"{self.redis_url.rstrip('/')}/{db}"

    @property
    def postgres_backend(self) -> str:
        """The PostgreSQL database as a Celery result backend URL (psycopg 3)."""
        return "db+postgresql+psycopg://" + self.postgres_url.split("://", 1)[1]


def listening(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@contextlib.contextmanager
def running(environ: Mapping[str, str] | None = None) -> Iterator[Services]:
    """The services of one run (see the module docstring); containers it started are
    removed when the block ends, however it ends."""
    env = {**DEFAULTS, **{k: v for k, v in (environ or os.environ).items()
                          if k in DEFAULTS and v}}
    mode = env["HARNESS_SERVICES"]
    if mode not in MODES:
        raise ServiceUnavailable(f"HARNESS_SERVICES must be one of {', '.join(MODES)}, "
                                 f"got {mode!r}")
    given = {name for name in DEFAULTS if (environ or os.environ).get(name)}
    started: list[Any] = []
    try:
        rabbitmq = _rabbitmq(env, mode, "HARNESS_RABBITMQ_URL" in given, started)
        redis = _url_service(env, mode, "HARNESS_REDIS_URL" in given, started, "redis", 6379)
        postgres = _url_service(env, mode, "HARNESS_POSTGRES_URL" in given, started,
                                "postgres", 5432)
        yield Services(rabbitmq, redis, postgres, started)
    finally:
        for container in reversed(started):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)


def _use_local(mode: str, given: bool, host: str, port: int) -> bool:
    """Whether a service comes from its address rather than from a container."""
    return given or mode == "local" or (mode == "auto" and listening(host, port))


def _rabbitmq(env: dict[str, str], mode: str, given: bool, started: list[Any]) -> RabbitMQ:
    url = env["HARNESS_RABBITMQ_URL"]
    local = RabbitMQ.from_url(url, env["HARNESS_RABBITMQCTL"],
                              "HARNESS_RABBITMQ_URL" if given else "127.0.0.1")
    if _use_local(mode, given, local.host, local.port):
        return local
    container, port = _start(env["HARNESS_RABBITMQ_IMAGE"], 5672, started, environment={
        "RABBITMQ_DEFAULT_USER": "guest", "RABBITMQ_DEFAULT_PASS": "guest"})
    node = RabbitMQ("127.0.0.1", port, "guest", "guest",
                    ("docker", "exec", container.id, "rabbitmqctl"),
                    f"container {container.name} ({env['HARNESS_RABBITMQ_IMAGE']})")
    _wait(node.answers, f"RabbitMQ in container {container.name}", container)
    return node


def _url_service(env: dict[str, str], mode: str, given: bool, started: list[Any],
                 kind: str, port: int) -> str:
    url = env[f"HARNESS_{kind.upper()}_URL"]
    if _use_local(mode, given, *_host_port(url, port)):
        return url
    image = env[f"HARNESS_{kind.upper()}_IMAGE"]
    if kind == "redis":
        container, host_port = _start(image, port, started)
        url = f"redis://127.0.0.1:{host_port}"
    else:
        container, host_port = _start(image, port, started, environment={
            "POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"})
        url = f"postgresql://postgres@127.0.0.1:{host_port}/test"
    _wait(lambda: _ready(kind, container), f"{kind} in container {container.name}", container)
    return url


def _ready(kind: str, container: Any) -> bool:
    """Whether the server in `container` accepts work (its own client says so)."""
    command = (["redis-cli", "ping"] if kind == "redis"
               else ["pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "test"])
    code, _ = container.exec_run(command)
    return bool(code == 0)


def docker_client() -> Any:
    """The Docker engine (DOCKER_HOST, or the default socket), or ServiceUnavailable."""
    import docker  # the Docker SDK for Python

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine at all: say where we looked
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise ServiceUnavailable(
            f"no Docker engine answers at {where} to start the services in (run 'make engine',"
            f" or start RabbitMQ, Redis and PostgreSQL on 127.0.0.1): {exc}") from None
    return client


def _start(image: str, port: int, started: list[Any],
           environment: dict[str, str] | None = None) -> tuple[Any, int]:
    """Run `image` with `port` published on a free port of 127.0.0.1."""
    import docker

    client = docker_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ServiceUnavailable(f"image {image} is missing (run 'make engine', which builds "
                                 "local stand-ins of the base images)") from None
    container = client.containers.run(image, detach=True, environment=environment or {},
                                      ports={f"{port}/tcp": ("127.0.0.1", None)},
                                      labels={"celery-tasks.harness": "service"})
    started.append(container)
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]
    return container, int(binding["HostPort"])


def _wait(ready: Any, what: str, container: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        container.reload()
        if container.status == "exited" or time.monotonic() > deadline:
            logs = container.logs(tail=20).decode(errors="replace")
            raise ServiceUnavailable(f"{what} did not become ready within {timeout:g} s:\n{logs}")
        time.sleep(0.5)


def describe(services: Services) -> Sequence[str]:
    """One line per service: where it is and where it came from."""
    return [f"RabbitMQ {services.rabbitmq.version()} at {services.rabbitmq.address} "
            f"({services.rabbitmq.origin})",
            f"Redis at {services.redis_url}", f"PostgreSQL at {services.postgres_url}"]
