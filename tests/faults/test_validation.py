"""The worker checks every message against its contract, whoever sent it: wrong types,
missing arguments, unknown task names and wrong results are error results, in seconds,
and dead-lettered; the worker keeps serving."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from harness.processes import ROOT, Worker, clean_env, run_producer
from tests.conftest import Broker, wait_for_depth
from tests.faults.conftest import send


def send_raw(queue: str, name: str, args: list[Any], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tests.faults.send_raw", queue, name,
                          json.dumps(args)], cwd=ROOT, env=clean_env(env), capture_output=True,
                         text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("name", "args", "error_type", "text"),
    [
        ("divide", ["x", 1], "ContractViolation", "argument a must be float, got str 'x'"),
        ("divide", [1], "ContractViolation", "missing a required argument: 'b'"),
        ("divide", [1, 2, 3], "ContractViolation", "too many positional arguments"),
        ("no_such_task", [1, 2], "NotRegistered", "no_such_task"),
    ],
)
def test_a_raw_message_that_breaks_the_contract_is_an_error_result(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker,
    record: Callable[..., None], name: str, args: list[Any], error_type: str, text: str,
) -> None:
    worker = start_worker("divide")
    reply = send_raw("divide", name, args, broker_env)
    assert (reply["status"], reply["error_type"]) == ("FAILURE", error_type), reply
    assert text in reply["error"]
    assert wait_for_depth(broker, "divide.dead", 1) == 1
    assert not re.search(r"Task divide\[[0-9a-f-]+\] succeeded", worker.log)  # never ran
    out = run_producer("divide", "7", "2", env=broker_env)  # still serving
    assert out.stdout.strip() == "3.5"
    record(1, 0, 0, f"send_task {name}{args}: {error_type} to the sender, dead-lettered")


def test_a_result_that_breaks_the_contract_is_an_error_result(
    start_fault_worker: Callable[..., Worker], fault_env: dict[str, str],
    fault_broker: Broker, record: Callable[..., None],
) -> None:
    start_fault_worker("faults_bad_return")
    report = send("faults_bad_return", [7], fault_env)
    assert report["failed"] == 1
    assert report["errors"][0].startswith("ContractViolation: faults_bad_return(x: int) -> int: "
                                          "the implementation returned str '7', not int")
    assert wait_for_depth(fault_broker, "faults_bad_return.dead", 1) == 1
    record(1, 0, 0, "implementation returned str for int: ContractViolation, dead-lettered")
