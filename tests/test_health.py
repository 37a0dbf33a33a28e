"""`python -m consumer --health`: the container health check asks the worker itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from harness.processes import CONSUMER_DIR, Worker, clean_env


def health(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consumer", *args, "--health"],
                          cwd=CONSUMER_DIR, env=clean_env(env), capture_output=True, text=True,
                          timeout=60)


def test_a_running_worker_answers_and_a_missing_one_does_not(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    worker = start_worker("unique_magic_task")
    assert health("unique_magic_task", env=broker_env).returncode == 0
    assert health(env=broker_env).returncode == 0

    missing = health("divide", env=broker_env)
    assert missing.returncode == 9
    assert "no worker for divide on " in missing.stderr

    worker.stop()
    assert health("unique_magic_task", env=broker_env).returncode == 9
