"""The compose stack, through the same path as `make up`: images, health, producer, scaling.

Needs a Docker engine (DOCKER_HOST, or `make engine` on hosts without one) holding the
base images. Without one these tests skip with the reason; with CI set they fail.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from harness.compose import PASSWORDS, WORKERS, Stack, free_port
from harness.processes import ROOT
from tests.conftest import fail_or_skip

# The first test builds the images (`make up`): on a machine with a cold image cache,
# pip inside the image build alone can take longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(1200)

@pytest.fixture(scope="module")
def stack(docker_client: Any) -> Iterator[Stack]:
    s = Stack(docker_client)
    try:
        s.up()
        yield s
    finally:
        s.close()


def test_make_up_starts_rabbitmq_and_one_healthy_worker_per_queue(stack: Stack) -> None:
    services = {c.labels["com.docker.compose.service"]: c for c in stack.containers()}
    assert set(services) == {"rabbitmq", *WORKERS}
    for name, container in services.items():
        assert container.attrs["State"]["Health"]["Status"] == "healthy", name


def test_make_produce_runs_the_producer_service_and_prints_6(stack: Stack) -> None:
    out = stack.make("produce", "ARGS=unique_magic_task 1 2 3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "6"


def test_a_chain_runs_across_worker_containers_with_the_producers_own_permissions(
    stack: Stack
) -> None:
    """The producer's user may not write to the default exchange: each step goes by its
    contract's exchange, the later ones published by the worker of the step before."""
    out = stack.make("produce", "ARGS=unique_magic_task 1 2 3 --then divide 4")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1.5"


def test_the_producers_user_may_not_ask_the_workers_and_is_told_in_one_line(
    stack: Stack
) -> None:
    """--require-worker uses Celery's remote control, which the producer's role may not
    (it could command the workers): exit 7, naming the permissions, nothing sent."""
    out = stack.make("produce", "ARGS=unique_magic_task 1 2 3 --require-worker")
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused Celery's remote control" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_containers_talk_only_on_the_stacks_network(stack: Stack) -> None:
    network = f"{stack.project}_tasks"
    for container in stack.containers():
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {network}
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings or [])


def test_images_run_as_non_root_and_hold_no_secrets(stack: Stack) -> None:
    for image in ("celery-tasks/consumer:latest", "celery-tasks/producer:latest"):
        config = stack.client.images.get(image).attrs["Config"]
        assert not any(password in e or "RABBITMQ_PASSWORD" in e
                       for e in config["Env"] or [] for password in PASSWORDS.values())
        out = stack.client.containers.run(image, entrypoint=["sh", "-c"],
                                          command=["id -u; test ! -e /app/.env && echo no-env"],
                                          network_mode="none", remove=True)
        assert out.decode().split() == ["10001", "no-env"]


# Which of celery_tasks' packages an image holds, importable or as files anywhere under its
# working directory (a stray build/ copy counts), and which extra drivers it installed.
CONTENTS = """
import importlib.util, json, os
found = {name: importlib.util.find_spec(name) is not None for name in (
    "celery_tasks.publisher", "celery_tasks.remote", "celery_tasks.worker", "redis",
    "sqlalchemy", "psycopg")}
for folder, dirs, files in os.walk("."):
    for part in {*dirs, *files}:
        name = {"publisher": "celery_tasks.publisher", "worker": "celery_tasks.worker",
                "remote.py": "celery_tasks.remote"}.get(part)
        if name:
            found[name] = True
print(json.dumps(found))
"""


@pytest.mark.parametrize(("image", "holds"), [
    ("celery-tasks/consumer:latest", {"celery_tasks.worker"}),
    ("celery-tasks/producer:latest", {"celery_tasks.publisher", "celery_tasks.remote"}),
])
def test_each_image_holds_only_its_sides_modules_and_no_extra_driver(
    stack: Stack, image: str, holds: set[str]
) -> None:
    out = stack.client.containers.run(image, entrypoint=["python", "-c", CONTENTS],
                                      network_mode="none", remove=True)
    present = {name for name, found in json.loads(out.decode()).items() if found}
    assert present == holds


def test_a_scaled_worker_service_shares_its_queue(stack: Stack) -> None:
    scaled = stack.compose("up", "-d", "--no-recreate", "--scale", "count-primes=2")
    assert scaled.returncode == 0, scaled.stderr
    wait = subprocess.run(["bash", "scripts/compose-wait.sh"], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=300)
    assert wait.returncode == 0, wait.stderr
    replicas = stack.containers("count-primes")
    assert len(replicas) == 2

    out = stack.make("produce", "ARGS=count_primes 200000 --count 40")
    assert out.returncode == 0, out.stderr
    assert "40 succeeded" in out.stdout
    received = [c.logs().decode().count("] received") for c in replicas]
    assert sum(received) == 40
    assert all(n > 0 for n in received), received


def test_make_ps_and_make_logs_show_the_stack(stack: Stack) -> None:
    ps = stack.make("ps")
    assert ps.returncode == 0 and "(healthy)" in ps.stdout
    logs = stack.make("logs", "SERVICE=count-primes")
    assert logs.returncode == 0 and " ready." in logs.stdout


def test_flower_runs_behind_the_monitoring_profile(stack: Stack) -> None:
    port = free_port()
    env = {**stack.env, "FLOWER_PORT": str(port)}
    up = subprocess.run(["docker-compose", "--profile", "monitoring", "up", "-d", "flower"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline and "OK" not in body:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as r:
                body = r.read().decode()
        except OSError:
            time.sleep(1)
    assert body == "OK"
    (flower,) = stack.containers("flower")
    logs = flower.logs().decode(errors="replace")
    assert not any(password in logs for password in PASSWORDS.values())


#: docker-compose.yml's Prometheus image when PROMETHEUS_IMAGE is unset (`make engine` builds
#: a stand-in under this name on hosts without a registry).
PROMETHEUS_IMAGE = "prom/prometheus:v2.42.0"


def prometheus(port: int, path: str, **params: str) -> Any:
    """The `data` of Prometheus's HTTP API answer at /api/v1/PATH."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}{query}",
                                timeout=5) as r:
        return json.loads(r.read().decode())["data"]


def wait_for_targets(port: int, replicas: dict[str, int],
                     timeout: float = 120) -> list[dict[str, Any]]:
    """Prometheus's active targets, once each worker service has a target per replica
    (`replicas`: DNS discovery refreshes every 15 s) and every target is up (or as they are
    after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            targets: list[dict[str, Any]] = prometheus(port, "targets")["activeTargets"]
        except OSError:  # not listening yet
            targets = []
        found = Counter(t["labels"].get("service") for t in targets
                        if t["labels"]["job"] == "workers")
        ready = all(found[service] == count for service, count in replicas.items()) and all(
            t["health"] == "up" for t in targets)
        if ready or time.monotonic() > deadline:
            return targets
        time.sleep(2)


@contextlib.contextmanager
def monitoring_up(stack: Stack) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """`make up MONITORING=1` on `stack` (CLUSTER=1 for the cluster): Prometheus's port and
    its active targets, once every worker container and every RabbitMQ node of the stack is a
    target that is up (a scaled service: one target per replica). Prometheus and Flower are
    removed afterwards: the stack's later tests run without them."""
    image = stack.env.get("PROMETHEUS_IMAGE", PROMETHEUS_IMAGE)
    if not stack.client.images.list(name=image):
        fail_or_skip(f"image {image} is missing (run 'make engine')")
    port = free_port()
    try:
        up = stack.make("up", "MONITORING=1", f"PROMETHEUS_PORT={port}",
                        f"FLOWER_PORT={free_port()}")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield port, check_targets(stack, port)
    finally:
        stack.compose("--profile", "monitoring", "rm", "--stop", "--force", "prometheus",
                      "flower")


def check_targets(stack: Stack, port: int) -> list[dict[str, Any]]:
    """Prometheus's targets, each up: every worker container and every RabbitMQ node."""
    targets = wait_for_targets(port, {s: len(stack.containers(s)) for s in WORKERS})
    down = {t["scrapeUrl"]: t["lastError"] for t in targets if t["health"] != "up"}
    assert targets and not down, down
    for service in WORKERS:
        scraped = [t["scrapeUrl"] for t in targets if t["labels"].get("service") == service]
        assert len(scraped) == len(stack.containers(service)), (service, scraped)
    for job in ("rabbitmq", "rabbitmq-detailed"):
        nodes = sorted(t["labels"]["instance"] for t in targets if t["labels"]["job"] == job)
        assert nodes == [f"{node}:15692" for node in stack.nodes()], (job, nodes)
    assert {t["labels"]["job"] for t in targets} == {"rabbitmq", "rabbitmq-detailed", "workers"}
    return targets


def queue_depths(port: int, queue: str) -> list[dict[str, Any]]:
    """The series of `queue`'s ready messages, as RabbitMQ's plugin reports them per queue."""
    series: list[dict[str, Any]] = prometheus(
        port, "query", query=f'rabbitmq_detailed_queue_messages_ready{{queue="{queue}"}}'
    )["result"]
    return series


def test_prometheus_scrapes_every_worker_container_and_rabbitmqs_queue_depths(
    stack: Stack
) -> None:
    """`make up MONITORING=1`: the monitoring profile's Prometheus finds each worker container
    by its service's name (a scaled service: each replica) and RabbitMQ's plugin, and has
    every one up."""
    with monitoring_up(stack) as (port, _):
        (series,) = queue_depths(port, "count_primes")
    assert series["metric"]["job"] == "rabbitmq-detailed"
    assert float(series["value"][1]) >= 0


def test_compose_passwords_never_reach_the_logs(stack: Stack) -> None:
    for container in stack.containers():
        logs = container.logs().decode(errors="replace")
        assert not any(password in logs for password in PASSWORDS.values())


# What a user may do on the stack's vhost, tried for real: each operation's outcome.
PERMISSIONS = """
import json, os, sys, amqp
host = os.environ["RABBITMQ_HOST"].split(",")[0]

def connect(vhost="/"):
    conn = amqp.Connection(host, userid=os.environ["RABBITMQ_USER"],
                           password=os.environ["RABBITMQ_PASSWORD"], virtual_host=vhost)
    conn.connect()
    return conn

def confirmed_publish(channel):
    channel.confirm_select()
    channel.basic_publish_confirm(amqp.Message("{}"), exchange="", routing_key="count_primes")

conn, out = connect(), {}
operations = [
        ("consume a task queue", lambda: conn.channel().basic_consume("count_primes")),
        ("delete a task queue", lambda: conn.channel().queue_delete("count_primes")),
        ("purge a task queue", lambda: conn.channel().queue_purge("count_primes")),
        ("publish by the default exchange", lambda: confirmed_publish(conn.channel())),
        ("declare a reply queue", lambda: conn.channel().queue_declare(
            "celery_tasks.reply.probe", durable=True, auto_delete=False)),
        ("open another vhost", lambda: connect("other"))]
for name, operation in [(n, o) for n, o in operations if n in sys.argv[1:]]:
    try:
        operation()
        out[name] = "allowed"
    except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed):  # 403, 530
        out[name] = "refused"
print(json.dumps(out))
"""


def permissions(stack: Stack, role: str, *operations: str) -> dict[str, str]:
    """Whether `role`'s credentials may do each of `operations`; the stack gets a vhost
    'other' to try first."""
    stack.rabbitmqctl("add_vhost", "other")
    out = stack.python(PERMISSIONS, role, *operations)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def check_roles(stack: Stack) -> None:
    """Producers cannot consume, delete or purge a task queue (nor reach a queue by the
    default exchange); workers cannot touch another vhost or a producer's reply queue."""
    producer = {"consume a task queue": "refused", "delete a task queue": "refused",
                "purge a task queue": "refused", "publish by the default exchange": "refused",
                "declare a reply queue": "allowed", "open another vhost": "refused"}
    assert permissions(stack, "PRODUCER", *producer) == producer
    worker = {"declare a reply queue": "refused", "open another vhost": "refused"}
    assert permissions(stack, "WORKER", *worker) == worker


def test_each_role_has_only_the_permissions_it_needs(stack: Stack) -> None:
    check_roles(stack)
