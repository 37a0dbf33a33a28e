"""README's "Add your own task", step by step, in a clone of this repository: a contract
class, `make vendor`, an implementation class, a compose service, then a real worker and the
producer. The new task then shows in every listing and in the docs, with no other edit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.compose import Stack
from harness.processes import ROOT, clean_env, share_venv
from tests.conftest import Broker

pytestmark = pytest.mark.timeout(600)

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Add your own task", 1)[1].split("\n## ", 1)[0]


def snippets() -> list[str]:
    """The indented blocks of README's section, in order, without their indentation."""
    blocks = re.findall(r"\n\n((?: {7}.*\n|\n)+)", SECTION)
    return [re.sub(r"^ {7}", "", block, flags=re.M).strip("\n") + "\n" for block in blocks]


def sh(*command: str, cwd: Path, env: dict[str, str] | None = None,
       timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(command), cwd=cwd, env=clean_env(env or {}), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"{command}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository at HEAD, its submodules checked out, sharing our venv."""
    repo = tmp_path_factory.mktemp("own-task") / "repo"
    git = ["git", "-c", "protocol.file.allow=always"]
    sh(*git, "clone", "--quiet", str(ROOT), str(repo), cwd=ROOT)
    sh(*git, "submodule", "update", "--init", "--quiet", cwd=repo)
    sh("git", "config", "user.email", "test@example.invalid", cwd=repo)
    sh("git", "config", "user.name", "own task test", cwd=repo)
    share_venv(repo)
    return repo


@pytest.fixture(scope="module")
def added(clone: Path) -> Path:
    """README's steps 1 to 4, as written there."""
    contract, commit, implementation, service = snippets()
    with (clone / "celery_tasks" / "tasks.py").open("a") as tasks:
        tasks.write("\n\n" + contract)
    sh("bash", "-c", commit.strip(), cwd=clone)  # git commit -am ... && make vendor
    with (clone / "consumer" / "consumer" / "implementations.py").open("a") as impls:
        impls.write("\n\n" + implementation)
    compose = (clone / "docker-compose.yml").read_text()
    indented = "".join(f"  {line}\n" for line in service.splitlines())
    (clone / "docker-compose.yml").write_text(compose.replace(
        "\n  producer:\n", f"\n{indented}\n  producer:\n", 1))
    return clone


def test_make_up_runs_the_new_task_and_make_produce_prints_its_result(
    added: Path, docker_client: Any
) -> None:
    """Step 5 as README writes it: `make up`, then `make produce ARGS="reverse_text hello"`."""
    stack = Stack(docker_client, root=added)
    try:
        stack.up()
        healthy = stack.compose("ps", "reverse-text")
        assert "healthy" in healthy.stdout, healthy.stdout + healthy.stderr
        out = stack.make("produce", "ARGS=reverse_text hello", timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "olleh"
    finally:
        stack.close()


def test_the_new_task_runs_on_a_local_worker(
    added: Path, broker: Broker, broker_env: dict[str, str]
) -> None:
    """Without containers: `make worker` for its queue, then `make produce-local`."""
    broker.delete_task_queues(("reverse_text",))
    worker = subprocess.Popen(["make", "--no-print-directory", "worker", "TASK=reverse_text"],
                              cwd=added, env=clean_env(broker_env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        assert worker.stdout is not None
        for line in worker.stdout:
            if " ready." in line:
                break
            assert time.monotonic() < deadline
        out = sh("make", "--no-print-directory", "produce-local",
                 "ARGS=reverse_text hello", cwd=added, env=broker_env)
        assert out.stdout.strip().splitlines()[-1] == "olleh"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        broker.delete_task_queues(("reverse_text",))


def test_the_new_task_shows_everywhere_with_no_other_edit(added: Path) -> None:
    producer = sh(str(ROOT / ".venv/bin/python"), "-m", "producer", "--list",
                  cwd=added / "producer", env={"CELERY_TASKS_ENV_FILE": ""})
    assert "reverse_text(text: str) -> str  queue=reverse_text" in producer.stdout
    contracts = sh(str(ROOT / ".venv/bin/python"), "-m", "celery_tasks", cwd=added / "consumer")
    assert "reverse_text(text: str) -> str" in contracts.stdout
    consumer = sh(str(ROOT / ".venv/bin/python"), "-m", "consumer", "--list",
                  cwd=added / "consumer", env={"CELERY_TASKS_ENV_FILE": ""})
    assert "implementation=ReverseWorker" in consumer.stdout
    sh("make", "--no-print-directory", "check-contracts", cwd=added)
    sh("make", "--no-print-directory", "test-parts", cwd=added)  # no test lists the tasks
    assert "`reverse_text` | `(text: str) -> str` | Return `text` backwards." in (
        added / "docs" / "contracts.md").read_text()
    services = sh("docker-compose", "config", "--services", cwd=added, env={
        **{f"RABBITMQ_{r}_{k}": "x" for r in ("ADMIN", "PRODUCER", "WORKER")
           for k in ("USER", "PASSWORD")}})
    assert "reverse-text" in services.stdout.split()
