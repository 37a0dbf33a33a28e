"""The worker's command line: listing, unknown tasks and bad options fail before any broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.implementations import IMPLEMENTATIONS

CONSUMER = Path(__file__).resolve().parents[1]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], cwd=CONSUMER, capture_output=True, text=True,
        timeout=60, env={**os.environ, **env},
    )


def test_list_names_every_implemented_task() -> None:
    out = run("--list")
    assert out.returncode == 0
    for name in ("unique_magic_task", "count_primes", "sleep_echo", "divide"):
        assert f"queue={name}" in out.stdout
    lines = {line.split("(")[0]: line for line in out.stdout.splitlines()}
    assert "pool=prefork" in lines["count_primes"] and "time-limits=enforced" in lines[
        "count_primes"]
    assert "pool=threads" in lines["sleep_echo"] and "time-limits=not-enforced" in lines[
        "sleep_echo"]


def test_health_for_an_unknown_task_is_exit_4_not_unhealthy() -> None:
    out = run("--health", "no_such_task")
    assert out.returncode == 4
    assert out.stderr.startswith("error: unknown task 'no_such_task'")


def test_unknown_task_is_exit_4_listing_the_known_ones() -> None:
    out = run("no_such_task")
    assert out.returncode == 4
    assert out.stderr.strip().splitlines() == [
        "error: unknown task 'no_such_task': this consumer implements "
        + ", ".join(IMPLEMENTATIONS)
    ]


@pytest.mark.parametrize("args", [["--bogus"], [], ["divide", "--concurrency", "0"],
                                  ["divide", "--pool", "gevent"]])
def test_bad_command_line_is_one_line_and_exit_2(args: list[str]) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")


def test_bad_setting_is_exit_7_naming_the_variable() -> None:
    out = run("divide", RABBITMQ_PORT="not-a-port")
    assert out.returncode == 7
    assert "RABBITMQ_PORT" in out.stderr and "Traceback" not in out.stderr


def test_help_lists_the_exit_codes() -> None:
    out = run("--help")
    assert out.returncode == 0
    assert "exit codes:" in out.stdout and "broker unreachable" in out.stdout
