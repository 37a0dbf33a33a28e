"""Each part is a package pip installs: in a fresh virtual environment, the producer and its
celery_tasks copy from the checkout give a `producer` command that works from any folder
(and the consumer a `consumer` one); no part installs a result backend's driver unless its
extra is asked for, and a missing driver is one line naming the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness.processes import ROOT, clean_env

pytestmark = pytest.mark.timeout(900)

DRIVERS = {"redis", "sqlalchemy", "psycopg", "psycopg-binary"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with both parts installed, each with its own pinned celery_tasks copy."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    for part in ("producer", "consumer"):
        out = subprocess.run([*pip, f"./{part}/celery_tasks", f"./{part}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=800)
        assert out.returncode == 0, out.stderr[-3000:]
    return env_dir / "bin"


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=clean_env({"CELERY_TASKS_ENV_FILE": "", **env}),
                          capture_output=True, text=True, timeout=120)


def test_the_installed_commands_work_from_any_folder(installed: Path, tmp_path: Path) -> None:
    producer = run([str(installed / "producer"), "--list"], cwd=tmp_path)
    assert producer.returncode == 0, producer.stderr
    assert [line.split("(")[0] for line in producer.stdout.splitlines()][:4] == [
        "unique_magic_task", "count_primes", "sleep_echo", "divide"]
    consumer = run([str(installed / "consumer"), "--list"], cwd=tmp_path)
    assert consumer.returncode == 0, consumer.stderr
    assert "implementation=MagicWorker" in consumer.stdout
    where = run([str(installed / "python"), "-c",
                 "import celery_tasks; print(celery_tasks.__file__)"], cwd=tmp_path)
    assert "site-packages" in where.stdout  # the installed copy, not a checkout's


def test_no_part_installs_a_result_backends_driver(installed: Path, tmp_path: Path) -> None:
    listing = run([str(installed / "python"), "-m", "pip", "list", "--format", "json"],
                  cwd=tmp_path)
    names = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"celery-tasks", "celery-tasks-producer", "celery-tasks-consumer"} <= names
    assert not names & DRIVERS


@pytest.mark.parametrize(("backend", "extra"), [
    ("redis://127.0.0.1:1/0", "redis"),
    ("db+postgresql+psycopg://postgres@127.0.0.1:1/test", "postgres"),
])
def test_a_missing_driver_is_one_line_naming_its_extra(
    installed: Path, tmp_path: Path, backend: str, extra: str
) -> None:
    for command in (["producer", "divide", "1", "2"], ["consumer", "divide"]):
        out = run([str(installed / command[0]), *command[1:]], cwd=tmp_path,
                  CELERY_RESULT_BACKEND=backend, RABBITMQ_PORT="1", BROKER_CONNECT_TIMEOUT="1")
        assert out.returncode == 7, out.stderr
        assert out.stderr.count("\n") == 1
        assert f"pip install 'celery-tasks[{extra}]'" in out.stderr


@pytest.mark.parametrize(("command", "setting", "extra"), [
    (["producer", "divide", "1", "2"], {"OTEL_TRACES_EXPORTER": "console"}, "tracing"),
    (["producer", "divide", "1", "2", "--metrics", "-"], {}, "metrics"),
    (["consumer", "divide"], {"CELERY_TASKS_METRICS_PORT": "9808"}, "metrics"),
    (["consumer", "divide"], {"OTEL_TRACES_EXPORTER": "otlp"}, "tracing"),
])
def test_telemetry_without_its_extra_is_one_line_naming_it(
    installed: Path, tmp_path: Path, command: list[str], setting: dict[str, str], extra: str
) -> None:
    out = run([str(installed / command[0]), *command[1:]], cwd=tmp_path, RABBITMQ_PORT="1",
              BROKER_CONNECT_TIMEOUT="1", **setting)
    assert out.returncode == 7, out.stderr  # before the broker (unreachable here) is tried
    assert out.stderr.count("\n") == 1
    assert f"pip install 'celery-tasks[{extra}]'" in out.stderr


def test_the_telemetry_extras_install_opentelemetry_and_prometheus_client() -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                          "--ignore-installed", "--quiet", "--disable-pip-version-check",
                          "--report", "-", "./celery_tasks[tracing,metrics]"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    names = {item["metadata"]["name"].lower().replace("_", "-")
             for item in json.loads(out.stdout)["install"]}
    assert {"opentelemetry-sdk", "opentelemetry-instrumentation-celery",
            "opentelemetry-exporter-otlp-proto-http", "prometheus-client"} <= names
    assert not names & DRIVERS


@pytest.mark.parametrize(("extra", "drivers"), [
    ("redis", {"redis"}), ("postgres", {"sqlalchemy", "psycopg", "psycopg-binary"})])
def test_each_extra_installs_its_driver(extra: str, drivers: set[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                          "--ignore-installed", "--quiet", "--disable-pip-version-check",
                          "--report", "-", f"./celery_tasks[{extra}]"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(out.stdout)["install"]}
    assert names & DRIVERS == drivers
