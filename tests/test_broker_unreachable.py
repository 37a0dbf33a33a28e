"""No broker: producer and worker give up within their deadline, naming host:port only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from harness.processes import CONSUMER_DIR, clean_env, run_producer

SECRET = "pa$$:w@rd/with%specials"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_env(timeout: str) -> dict[str, str]:
    return {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(closed_port()),
            "RABBITMQ_PASSWORD": SECRET, "BROKER_CONNECT_TIMEOUT": timeout,
            "CELERY_TASKS_ENV_FILE": ""}


def test_producer_gives_up_with_exit_5_naming_host_and_port() -> None:
    env = unreachable_env("3")
    out = run_producer("unique_magic_task", "1", "2", "3", env=env, timeout=20)
    assert out.returncode == 5
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"127.0.0.1:{env['RABBITMQ_PORT']}" in lines[0] and "within 3 s" in lines[0]
    assert "pa$$" not in out.stderr + out.stdout


def test_a_broker_url_is_named_and_the_variables_it_replaces_are_not_read() -> None:
    port = closed_port()
    env = {"CELERY_BROKER_URL": f"amqp://guest:{quote(SECRET, safe='')}@127.0.0.1:{port}//",
           "RABBITMQ_PORT": "not-a-port",
           "BROKER_CONNECT_TIMEOUT": "2", "CELERY_TASKS_ENV_FILE": ""}
    out = run_producer("unique_magic_task", "1", "2", "3", env=env, timeout=20)
    assert out.returncode == 5, out.stderr  # not 7: RABBITMQ_PORT is not read
    assert f"at 127.0.0.1:{port} within 2 s" in out.stderr
    assert out.stderr.strip().endswith("start RabbitMQ or check CELERY_BROKER_URL")
    assert "pa$$" not in out.stderr + out.stdout


def test_worker_gives_up_with_exit_5_naming_host_and_port(tmp_path: Path) -> None:
    env = unreachable_env("2")
    out = subprocess.run([sys.executable, "-m", "consumer", "divide"], cwd=CONSUMER_DIR,
                         env=clean_env(env), capture_output=True, text=True, timeout=30)
    assert out.returncode == 5
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert f"127.0.0.1:{env['RABBITMQ_PORT']}" in out.stderr
    assert "pa$$" not in out.stderr + out.stdout
