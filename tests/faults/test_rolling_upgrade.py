"""A rolling contract upgrade on the cluster stack, as README tells it: `unique_magic_task`
gains an optional trailing parameter (`arg4: int = 0`) in a clone of this repository,
committed, pinned with `make vendor` and implemented; its images are built; three worker
replicas are replaced one by one while a producer keeps calling, then the producer.

Consumers first: every call succeeds with the right result. Producers first: every call
that reaches an old worker ends in ContractMismatch at the caller, never a wrong result,
and nothing is lost (each call has an outcome; each mismatched message is dead-lettered)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.compose import PASSWORDS, Stack
from harness.processes import ROOT, share_venv

pytestmark = pytest.mark.timeout(1800)

TASK, SERVICE = "unique_magic_task", "unique-magic-task"
V1 = {"consumer": "celery-tasks/consumer:latest", "producer": "celery-tasks/producer:latest"}
#: The change, in the clone: the contract and its implementation gain `arg4: int = 0`.
CONTRACT = ("def run(self, arg1: int, arg2: int, arg3: int) -> int:\n"
            '        """Return arg1 + arg2 + arg3."""',
            "def run(self, arg1: int, arg2: int, arg3: int, arg4: int = 0) -> int:\n"
            '        """Return arg1 + arg2 + arg3 + arg4."""')
IMPLEMENTATION = ("    def run(self, arg1: int, arg2: int, arg3: int) -> int:\n"
                  "        return arg1 + arg2 + arg3",
                  "    def run(self, arg1: int, arg2: int, arg3: int, arg4: int = 0) -> int:\n"
                  "        return arg1 + arg2 + arg3 + arg4")

# One call after another until /tmp/stop exists: each call's outcome, as JSON at the end;
# /tmp/count says how many calls have been made so far.
# The v2 producer passes arg4 = 1, so a v1 worker that ran it anyway would answer 3 + i.
STREAM = """
import json, os, sys, time
from celery_tasks.core.errors import CeleryTasksError
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

extra = [int(a) for a in sys.argv[1:]]
magic = remote(MagicCeleryTask.run, timeout=120)
outcomes, i = [], 0
while not os.path.exists("/tmp/stop"):
    try:
        outcomes.append([i, "ok", magic(1, 2, i, *extra)])
    except CeleryTasksError as exc:
        outcomes.append([i, type(exc).__name__, str(exc)])
    i += 1
    if i % 10 == 0:
        with open("/tmp/count", "w") as count:
            count.write(str(i))
    time.sleep(0.02)
print("OUTCOMES " + json.dumps(outcomes), flush=True)
"""


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: the text to change is not there once"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def v2_images(cluster: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """README's flow in a clone: change the contract, commit, `make vendor`, implement;
    then the images, each built from its own folder with its pinned commit."""
    clone = tmp_path_factory.mktemp("upgrade") / "repo"
    git("clone", "--quiet", str(ROOT), str(clone), cwd=ROOT)
    git("submodule", "update", "--init", "--quiet", cwd=clone)
    git("config", "user.email", "test@example.invalid", cwd=clone)
    git("config", "user.name", "rolling upgrade test", cwd=clone)
    share_venv(clone)  # make vendor runs our tools
    edit(clone / "celery_tasks" / "tasks.py", *CONTRACT)
    git("commit", "--quiet", "-am", "unique_magic_task: an optional arg4", cwd=clone)
    vendor = subprocess.run(["make", "--no-print-directory", "vendor"], cwd=clone,
                            capture_output=True, text=True, timeout=300)
    assert vendor.returncode == 0, vendor.stderr
    edit(clone / "consumer" / "consumer" / "implementations.py", *IMPLEMENTATION)
    images = {part: f"celery-tasks/{part}:upgrade-{cluster.project}"
              for part in ("consumer", "producer")}
    for part, tag in images.items():
        commit = git("-C", f"{part}/celery_tasks", "rev-parse", "--short=12", "HEAD", cwd=clone)
        cluster.client.images.build(
            path=str(clone / part), tag=tag, network_mode="host", rm=True,
            buildargs={"CELERY_TASKS_COMMIT": commit, "PYTHON_IMAGE": "python:3.11-slim"})
    yield images
    for tag in images.values():
        cluster.client.images.remove(tag, force=True)


class Rollout:
    """Worker replicas and producer streams of the cluster stack, run from given images."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.worker_env = stack.containers(SERVICE)[0].attrs["Config"]["Env"]
        self.producer_env = {
            "RABBITMQ_HOST": "rabbitmq-1,rabbitmq-2,rabbitmq-3",
            "RABBITMQ_USER": "producer", "RABBITMQ_PASSWORD": PASSWORDS["PRODUCER"],
            "BROKER_CONNECT_TIMEOUT": "120"}
        self.workers: list[Any] = []
        self.started: list[Any] = []

    def _run(self, image: str, **options: Any) -> Any:
        container = self.stack.client.containers.run(
            image, detach=True, network=self.stack.network,
            labels={"celery-tasks.test": self.stack.project}, **options)
        self.started.append(container)
        return container

    def worker(self, image: str) -> Any:
        """A worker replica from `image`, once it is ready."""
        container = self._run(image, command=[TASK], environment=self.worker_env)
        deadline = time.monotonic() + 120
        while " ready." not in container.logs().decode(errors="replace"):
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.5)
        self.workers.append(container)
        return container

    def replace_workers(self, image: str) -> None:
        """Each replica in turn: a warm shutdown (its running tasks finish, its prefetched
        ones go back to the queue), then a replica of `image` in its place."""
        for old in list(self.workers):
            old.stop(timeout=60)
            self.workers.remove(old)
            self.worker(image)
            time.sleep(2)

    def stream(self, image: str, *extra: str) -> Any:
        return self._run(image, entrypoint=["python", "-c", STREAM], command=list(extra),
                         environment=self.producer_env)

    @staticmethod
    def calls(stream: Any) -> int:
        """How many calls a stream has made so far."""
        code, out = stream.exec_run(["cat", "/tmp/count"])
        return int(out) if code == 0 else 0

    def until_calls(self, streams: list[Any], total: int, timeout: float = 600) -> None:
        """Let the streams run until they have made `total` calls between them."""
        deadline = time.monotonic() + timeout
        while sum(self.calls(s) for s in streams) < total and time.monotonic() < deadline:
            time.sleep(1)

    @staticmethod
    def outcomes(stream: Any) -> list[list[Any]]:
        """Stop a stream and read what became of each of its calls."""
        stream.exec_run(["touch", "/tmp/stop"])
        stream.wait(timeout=300)
        logs = stream.logs().decode(errors="replace")
        (line,) = [line for line in logs.splitlines() if line.startswith("OUTCOMES ")]
        return list(json.loads(line.removeprefix("OUTCOMES ")))

    def close(self) -> None:
        for container in self.started:
            container.remove(force=True)


@pytest.fixture
def rollout(cluster: Stack) -> Iterator[Rollout]:
    """Three v1 replicas of the worker in place of the compose service's one; afterwards the
    service runs alone again."""
    cluster.wait_for_cluster()
    plan = Rollout(cluster)
    (service_worker,) = cluster.containers(SERVICE)
    service_worker.stop(timeout=60)
    try:
        for _ in range(3):
            plan.worker(V1["consumer"])
        yield plan
    finally:
        plan.close()
        service_worker.start()


def dead_letters(stack: Stack) -> int:
    for line in stack.rabbitmqctl("list_queues", "name", "messages").splitlines():
        name, _, count = line.partition("\t")
        if name == f"{TASK}.dead":
            return int(count)
    return 0


def test_consumers_first_loses_nothing_and_fails_no_call(
    cluster: Stack, rollout: Rollout, v2_images: dict, record: Any
) -> None:
    old = rollout.stream(V1["producer"])  # the v1 producer keeps calling throughout
    time.sleep(5)
    rollout.replace_workers(v2_images["consumer"])
    new = rollout.stream(v2_images["producer"], "1")  # then the producer, with arg4
    time.sleep(5)
    rollout.until_calls([old, new], 1000)  # a stream of at least 1,000 calls in all
    before, after = rollout.outcomes(old), rollout.outcomes(new)
    failed = [o for o in before + after if o[1] != "ok"]
    record(len(before) + len(after), len(before) + len(after) - len(failed), 0,
           f"rolling upgrade, consumers first: {len(failed)} failed, 3 workers replaced")
    assert failed == []
    assert all(result == 3 + i for i, _, result in before)  # v1 calls on v1 and v2 workers
    assert all(result == 3 + i + 1 for i, _, result in after)  # v2 calls, arg4 = 1
    assert len(before) + len(after) >= 1000


def test_producers_first_is_contract_mismatch_never_a_wrong_result(
    cluster: Stack, rollout: Rollout, v2_images: dict, record: Any
) -> None:
    dead_before = dead_letters(cluster)
    since = time.time() - 1
    new = rollout.stream(v2_images["producer"], "1")  # the producer first: against README
    time.sleep(10)
    rollout.replace_workers(v2_images["consumer"])
    time.sleep(5)
    outcomes = rollout.outcomes(new)
    kinds = {kind for _, kind, _ in outcomes}
    mismatched = {re.findall(r"\[([0-9a-f-]+)\]", text)[0]
                  for _, kind, text in outcomes if kind == "ContractMismatch"}
    refused_by_v1 = set()
    for container in rollout.started:
        if container.image.tags and container.image.tags[0] == V1["consumer"]:
            logs = container.logs(since=int(since)).decode(errors="replace")
            refused_by_v1 |= set(re.findall(r"\[([0-9a-f-]+)\] raised expected: ContractMismatch",
                                            logs))
    ok = [o for o in outcomes if o[1] == "ok"]
    record(len(outcomes), len(ok), 0, f"rolling upgrade, producer first: {len(mismatched)} "
           f"ContractMismatch (each from an old worker), {len(ok)} right results")
    assert kinds == {"ok", "ContractMismatch"}  # no timeout, no other error: nothing lost
    assert all(result == 3 + i + 1 for i, _, result in ok)  # never a v1 answer
    assert mismatched == refused_by_v1  # every mismatch was an old worker's, and vice versa
    assert outcomes[-1][1] == "ok"  # once every worker is new, calls succeed
    deadline = time.monotonic() + 30
    while dead_letters(cluster) - dead_before < len(mismatched) and time.monotonic() < deadline:
        time.sleep(1)
    assert dead_letters(cluster) - dead_before == len(mismatched)  # each refused call kept
