"""The producer's command line: every bad input is one line, its own exit code, nothing sent.

These run without a broker: each error here is caught before a connection is tried (the
broker address points at a closed port, which would be exit 5 if it were reached).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from celery_tasks.tasks import CONTRACTS

PRODUCER = Path(__file__).resolve().parents[1]
NO_BROKER = {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": "9", "BROKER_CONNECT_TIMEOUT": "1"}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args], cwd=PRODUCER, capture_output=True, text=True,
        timeout=60, env={**os.environ, **NO_BROKER, **env},
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert text in lines[0]


def test_list_shows_every_contract_with_signature_and_queue() -> None:
    out = run("--list")
    assert out.returncode == 0
    assert "unique_magic_task(arg1: int, arg2: int, arg3: int) -> int  queue=unique_magic_task" in (
        out.stdout.splitlines())
    assert len(out.stdout.splitlines()) == len(CONTRACTS)


def test_list_as_json() -> None:
    listed = json.loads(run("--list", "--json").stdout)
    assert [c["name"] for c in listed] == list(CONTRACTS)
    assert listed[3]["signature"] == "divide(a: float, b: float) -> float"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["unique_magic_task", "1", "2"], "missing a required argument: 'arg3'"),
        (["unique_magic_task", "1", "2", "3", "4"], "too many positional arguments"),
        (["unique_magic_task", "1", "2", "three"], "argument arg3 must be int"),
        (["count_primes", "1e3"], "argument limit must be int"),
        (["sleep_echo", "soon", "x"], "argument seconds must be float"),
    ],
)
def test_bad_arguments_are_exit_3(args: list[str], text: str) -> None:
    assert_one_line_error(run(*args), 3, text)


def test_unknown_task_is_exit_4() -> None:
    assert_one_line_error(run("no_such_task", "1"), 4, "known tasks are unique_magic_task")


@pytest.mark.parametrize(
    "args",
    [["--bogus"], [], ["divide", "1", "2", "--count", "0"], ["divide", "1", "2", "--timeout", "-1"],
     ["divide", "1", "2", "--count", "many"]],
)
def test_bad_command_line_is_exit_2(args: list[str]) -> None:
    assert_one_line_error(run(*args), 2, "")


def test_bad_setting_is_exit_7() -> None:
    assert_one_line_error(run("divide", "1", "2", RABBITMQ_PORT="x"), 7, "RABBITMQ_PORT")


def test_unreachable_broker_is_exit_5_and_names_host_and_port() -> None:
    out = run("divide", "1", "2", RABBITMQ_PASSWORD="hunter2-secret")
    assert_one_line_error(out, 5, "127.0.0.1:9")
    assert "hunter2" not in out.stderr + out.stdout


def test_help_documents_every_exit_code() -> None:
    out = run("--help")
    assert out.returncode == 0
    for code in ("0", "1", "2", "3", "4", "5", "6", "7", "10", "11", "12", "130"):
        assert f"\n  {code} " in out.stdout


@pytest.mark.parametrize("command", [["producer", "--list"], ["producer", "--list", "--json"],
                                     ["celery_tasks"], ["celery_tasks", "--json"]])
def test_a_closed_output_is_exit_130_without_a_traceback(command: list[str]) -> None:
    """`python -m producer --list | head -0`: the reader left before anything was written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([sys.executable, "-m", *command], cwd=PRODUCER, stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=60,
                             env={**os.environ, **NO_BROKER})
    finally:
        os.close(write_end)
    assert out.returncode == 130
    assert out.stderr == ""
