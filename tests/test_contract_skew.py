"""Skew between the producer's and the consumer's pinned celery_tasks, as real git trees.

Each test clones this repository, changes a contract in celery_tasks/, runs `make vendor`,
then leaves one side's submodule at the older commit (a forgotten `git submodule
update`), and runs that side's worker or producer against the other.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.processes import ROOT, Worker, clean_env
from tests.conftest import Broker, wait_for_depth
from tests.test_submodules import GIT_ENV, git

DIVIDE = "    def run(self, a: float, b: float) -> float:"
IMPL = "    def run(self, a: float, b: float) -> float:\n        return a / b"


def skewed_clone(tmp: Path, contract: str, impl: str, stale: str) -> tuple[Path, str, str]:
    """A clone whose divide contract became `contract`, with `stale` left on the old pin.

    Returns the clone and the old and new pins (12 hex digits).
    """
    clone = tmp / "clone"
    git("clone", "--quiet", str(ROOT), str(clone), cwd=tmp)
    git("-c", "protocol.file.allow=always", "submodule", "update", "--init", cwd=clone)
    old = git("rev-parse", "HEAD:consumer/celery_tasks", cwd=clone).strip()
    tasks = clone / "celery_tasks" / "tasks.py"
    tasks.write_text(tasks.read_text().replace(DIVIDE, contract))
    if stale == "producer":  # the consumer moves on: its implementation follows the contract
        impls = clone / "consumer" / "consumer" / "implementations.py"
        impls.write_text(impls.read_text().replace(IMPL, impl))
    git("commit", "--quiet", "-am", "change the divide contract", cwd=clone)
    out = subprocess.run(["bash", "scripts/vendor.sh"], cwd=clone, capture_output=True,
                         text=True, timeout=120,
                         env=clean_env({**GIT_ENV, "PYTHON": sys.executable}))
    assert out.returncode == 0, out.stderr
    new = git("rev-parse", "HEAD:consumer/celery_tasks", cwd=clone).strip()
    git("checkout", "--quiet", "--detach", old, cwd=clone / stale / "celery_tasks")
    return clone, old[:12], new[:12]


def produce(clone: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer", *args], cwd=clone / "producer",
                          env=clean_env(env), capture_output=True, text=True, timeout=120)


@pytest.fixture
def start_clone_worker(broker: Broker, broker_env: dict[str, str],
                       tmp_path: Path) -> Callable[[Path], Worker]:
    workers: list[Worker] = []

    def start(clone: Path) -> Worker:
        worker = Worker("divide", broker_env, tmp_path, cwd=clone / "consumer")
        workers.append(worker)
        return worker.start()

    yield start  # type: ignore[misc]
    for worker in workers:
        worker.stop()


def test_an_incompatible_producer_gets_contract_mismatch_and_nothing_runs(
    tmp_path: Path, broker: Broker, broker_env: dict[str, str],
    start_clone_worker: Callable[[Path], Worker],
) -> None:
    newer = "    def run(self, a: float, b: float, c: float) -> float:"
    clone, old, new = skewed_clone(tmp_path, newer, "", stale="consumer")
    worker = start_clone_worker(clone)  # still on the old contract: divide(a, b)
    out = produce(clone, broker_env, "divide", "1", "2", "3", "--timeout", "10")  # "within seconds"
    assert out.returncode == 11, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "ContractMismatch" in line and "parameter 'c' is unknown to the worker" in line
    assert f"celery_tasks {new}" in line and f"celery_tasks {old}" in line  # both commits
    assert len(re.findall(r"[0-9a-f]{16}", line)) >= 2  # both fingerprints
    assert wait_for_depth(broker, "divide.dead", 1) == 1
    assert " succeeded in " not in worker.log  # the task never ran


def test_a_compatible_change_runs(
    tmp_path: Path, broker_env: dict[str, str], start_clone_worker: Callable[[Path], Worker],
) -> None:
    newer = "    def run(self, a: float, b: float, digits: int = 3) -> float:"
    impl = ("    def run(self, a: float, b: float, digits: int = 3) -> float:\n"
            "        return round(a / b, digits)")
    clone, _, _ = skewed_clone(tmp_path, newer, impl, stale="producer")
    start_clone_worker(clone)  # the worker learned an optional parameter first
    out = produce(clone, broker_env, "divide", "2", "3")
    assert (out.returncode, out.stdout.strip()) == (0, "0.667"), out.stderr
    check = subprocess.run([sys.executable, "scripts/check-contracts.py"], cwd=clone,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 1
    assert "skew: divide:" in check.stdout and ": compatible" in check.stdout


def test_a_result_that_breaks_the_contract_is_exit_12_for_the_producer_script(
    tmp_path: Path, broker: Broker, broker_env: dict[str, str],
    start_clone_worker: Callable[[Path], Worker],
) -> None:
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(ROOT), str(clone), cwd=tmp_path)
    git("-c", "protocol.file.allow=always", "submodule", "update", "--init", cwd=clone)
    impls = clone / "consumer" / "consumer" / "implementations.py"
    impls.write_text(impls.read_text().replace(IMPL, IMPL.replace("return a / b",
                                                                   "return str(a / b)")))
    start_clone_worker(clone)  # a faulty implementation: the signature is right, the value not
    out = produce(clone, broker_env, "divide", "1", "2")
    assert out.returncode == 12, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "ContractViolation" in line and "returned str '0.5', not float" in line
    assert wait_for_depth(broker, "divide.dead", 1) == 1
