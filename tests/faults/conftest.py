"""Fault-test fixtures: test-contract workers, a sender process, RabbitMQ restarts, a report.

Every fault test records how many tasks it sent, how many completed and how many were
lost; the table is printed at the end of the run (and by `make faults`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.compose import Stack
from harness.processes import ROOT, Worker, clean_env, kill_all
from tests.conftest import Broker
from tests.faults.contracts import IMPLEMENTATIONS

FAULT_TASKS = tuple(IMPLEMENTATIONS)
REPORT: list[dict[str, Any]] = []
REPORT_PATH = ROOT / "build" / "faults.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster's tests last, in their order: the cluster stays up from its first test to
    the end of the run, and its nodes and workers would load the host under the others."""
    items.sort(key=lambda item: "cluster" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def cluster(docker_client: Any) -> Iterator[Stack]:
    """The three-node cluster stack (`make up CLUSTER=1`), for every cluster fault of the
    run; removed with its volumes at the end."""
    stack = Stack(docker_client, cluster=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def fault_env(broker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**broker_env, "FAULTS_STATE_DIR": str(tmp_path)}


@pytest.fixture
def fault_broker(broker: Broker) -> Iterator[Broker]:
    broker.delete_task_queues(FAULT_TASKS)
    yield broker
    broker.delete_task_queues(FAULT_TASKS)


@pytest.fixture
def start_fault_worker(
    fault_broker: Broker, fault_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start a worker for a test contract, built the article's way; stopped at teardown."""
    started: list[Worker] = []

    def start(task: str, **kwargs: Any) -> Worker:
        worker = Worker(task, fault_env, tmp_path, cwd=ROOT, module="tests.faults.worker",
                        **kwargs)
        started.append(worker)
        return worker.start()

    yield start
    kill_all(started)


def send(name: str, args: list[Any], env: dict[str, str], count: int = 1,
         timeout: float = 60) -> dict[str, Any]:
    """Send `count` calls of a test contract from a separate process; its JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.faults.send", name, json.dumps(args), str(count),
         str(timeout)], cwd=ROOT, env=clean_env(env), capture_output=True, text=True,
        timeout=timeout + 60,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def attempts(env: dict[str, str], key: str) -> int:
    path = Path(env["FAULTS_STATE_DIR"]) / f"{key}.attempts"
    return int(path.read_text()) if path.exists() else 0


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a fault test's figures: sent, completed (with a result) and lost."""

    def add(sent: int, completed: int, lost: int, note: str = "") -> None:
        REPORT.append({"fault": request.node.name, "sent": sent, "completed": completed,
                       "lost": lost, "note": note})

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    REPORT_PATH.parent.mkdir(exist_ok=True)
    REPORT_PATH.write_text(json.dumps(REPORT, indent=2))
    width = max(len(r["fault"]) for r in REPORT)
    terminalreporter.section("faults: tasks sent, completed, lost")
    terminalreporter.write_line(f"{'fault':<{width}}  {'sent':>5} {'done':>5} {'lost':>5}  note")
    for r in REPORT:
        terminalreporter.write_line(
            f"{r['fault']:<{width}}  {r['sent']:>5} {r['completed']:>5} {r['lost']:>5}  "
            f"{r['note']}")
