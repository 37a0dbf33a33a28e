"""The compose stack, through the same path as `make up`: images, health, producer, scaling.

Needs a Docker engine (DOCKER_HOST, or `make engine` on hosts without one) holding the
base images. Without one these tests skip with the reason; with CI set they fail.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import ROOT, clean_env
from tests.test_broker_unreachable import closed_port

# The first test builds the images (`make up`): on a machine with a cold image cache,
# pip inside the image build alone can take longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(1200)

PASSWORD = "c0mp0se-p@ss:w/rd%x"
WORKERS = ("unique-magic-task", "count-primes", "sleep-echo", "divide")


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    import docker  # the Docker SDK for Python

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine: say why
        where = os.environ.get("DOCKER_HOST", "the default socket")
        _fail_or_skip(f"no Docker engine answers at {where} (run 'make engine', then the tests "
                      f"through make, which finds it; or export DOCKER_HOST): {exc}")
    for image in (os.environ.get("PYTHON_IMAGE", "python:3.11-slim"),
                  os.environ.get("RABBITMQ_IMAGE", "rabbitmq:4.3-management")):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            _fail_or_skip(f"base image {image} is missing (run 'make engine')")
    yield client
    client.close()


class Stack:
    """One compose project, driven by make, inspected with the Docker SDK."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.project = f"ctest{uuid.uuid4().hex[:8]}"
        self.env = clean_env({
            "COMPOSE_PROJECT_NAME": self.project,
            "RABBITMQ_USER": "tasks",
            "RABBITMQ_PASSWORD": PASSWORD,
            "RABBITMQ_MANAGEMENT_PORT": str(closed_port()),
        })

    def make(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=600)

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client.containers.list(filters={"label": labels}))


@pytest.fixture(scope="module")
def stack(docker_client: Any) -> Iterator[Stack]:
    s = Stack(docker_client)
    try:
        up = s.make("up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield s
    finally:
        s.make("down", "VOLUMES=1", timeout=300)


def test_make_up_starts_rabbitmq_and_one_healthy_worker_per_queue(stack: Stack) -> None:
    services = {c.labels["com.docker.compose.service"]: c for c in stack.containers()}
    assert set(services) == {"rabbitmq", *WORKERS}
    for name, container in services.items():
        assert container.attrs["State"]["Health"]["Status"] == "healthy", name


def test_make_produce_runs_the_producer_service_and_prints_6(stack: Stack) -> None:
    out = stack.make("produce", "ARGS=unique_magic_task 1 2 3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "6"


def test_containers_talk_only_on_the_stacks_network(stack: Stack) -> None:
    network = f"{stack.project}_tasks"
    for container in stack.containers():
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {network}
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings or [])


def test_images_run_as_non_root_and_hold_no_secrets(stack: Stack) -> None:
    for image in ("celery-tasks/consumer:latest", "celery-tasks/producer:latest"):
        config = stack.client.images.get(image).attrs["Config"]
        assert not any(PASSWORD in e or "RABBITMQ_PASSWORD" in e for e in config["Env"] or [])
        out = stack.client.containers.run(image, entrypoint=["sh", "-c"],
                                          command=["id -u; test ! -e /app/.env && echo no-env"],
                                          network_mode="none", remove=True)
        assert out.decode().split() == ["10001", "no-env"]


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
    port = closed_port()
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
    assert PASSWORD not in flower.logs().decode(errors="replace")


def test_compose_password_never_reaches_the_logs(stack: Stack) -> None:
    for container in stack.containers():
        assert PASSWORD not in container.logs().decode(errors="replace")
