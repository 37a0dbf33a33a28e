"""A compose stack of this repository, driven by make and inspected with the Docker SDK: the
one-node stack (docker-compose.yml) or the three-node cluster (docker-compose.cluster.yml).

Each `Stack` is a compose project of its own (a random name), with its own credentials, so
tests never meet a developer's stack; `close()` removes it with its volumes.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery_tasks.tasks import CONTRACTS

from .processes import ROOT, clean_env

#: Passwords with URL-special characters: they must survive every hop intact.
PASSWORDS = {"ADMIN": "adm1n-p@ss:w/rd%x", "PRODUCER": "pr0d-p@ss:w/rd%y",
             "WORKER": "w0rk-p@ss:w/rd%z"}
#: The worker services: one per contract, named after its queue.
WORKERS = tuple(name.replace("_", "-") for name in CONTRACTS)
NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
#: The quorum queues the cluster faults put traffic through.
TASK_QUEUES = ("count_primes", "unique_magic_task")
_SUCCEEDED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] succeeded")


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on (for ports a stack publishes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One compose project: `make up` (CLUSTER=1 for the cluster), its containers, faults."""

    def __init__(self, client: Any, cluster: bool = False, root: Path = ROOT) -> None:
        """`root`: the checkout whose compose files and images the stack runs."""
        self.client, self.cluster, self.root = client, cluster, root
        self.project = f"ctest{uuid.uuid4().hex[:8]}"
        self.files = ["-f", "docker-compose.cluster.yml"] if cluster else []
        self.env = clean_env({
            "COMPOSE_PROJECT_NAME": self.project,
            **{f"RABBITMQ_{role}_USER": role.lower() for role in PASSWORDS},
            **{f"RABBITMQ_{role}_PASSWORD": password for role, password in PASSWORDS.items()},
            "RABBITMQ_ERLANG_COOKIE": uuid.uuid4().hex,
            "RABBITMQ_MANAGEMENT_PORT": str(free_port()),
            # scripts/compose-wait.sh: three nodes forming a cluster, and the first worker's
            # quorum queues, on 2 loaded cores, may take longer than its default 240 s.
            "WAIT_TIMEOUT": "600",
        })

    @property
    def network(self) -> str:
        return f"{self.project}_tasks"

    def make(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        flags = ["CLUSTER=1"] if self.cluster else []
        return subprocess.run(["make", "--no-print-directory", *args, *flags], cwd=self.root,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def up(self) -> None:
        out = self.make("up")
        if out.returncode != 0:
            raise RuntimeError(f"make up failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")

    def close(self) -> None:
        self.make("down", "VOLUMES=1", timeout=300)

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", *self.files, *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def producer(self, *args: str) -> subprocess.Popen[str]:
        """`python -m producer ARGS` in a one-off producer container, in the background."""
        return subprocess.Popen(["docker-compose", *self.files, "run", "--rm", "-T", "producer",
                                 *args], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def python(self, source: str, role: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Python `source` (with ARGS) in a one-off producer container, as RabbitMQ user `role`
        (ADMIN, PRODUCER or WORKER): what a host of that role could do."""
        return self.compose("run", "--rm", "-T",
                            "-e", f"RABBITMQ_USER={self.env[f'RABBITMQ_{role}_USER']}",
                            "-e", f"RABBITMQ_PASSWORD={self.env[f'RABBITMQ_{role}_PASSWORD']}",
                            "--entrypoint", "python", "producer", "-c", source, *args)

    def wait(self, timeout: float = 300) -> None:
        """Until every container of the stack is healthy (scripts/compose-wait.sh)."""
        out = subprocess.run(["bash", "scripts/compose-wait.sh"], cwd=self.root,
                             env={**self.env, "COMPOSE": " ".join(["docker-compose",
                                                                   *self.files]),
                                  "WAIT_TIMEOUT": str(int(timeout))},
                             capture_output=True, text=True, timeout=timeout + 60)
        if out.returncode != 0:
            raise RuntimeError(f"the stack is not healthy:\n{out.stderr[-3000:]}")

    def containers(self, service: str | None = None, stopped: bool = False) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client.containers.list(all=stopped, filters={"label": labels}))

    def container(self, service: str) -> Any:
        (found,) = self.containers(service, stopped=True)
        return found

    # RabbitMQ nodes ---------------------------------------------------------------------

    def rabbitmqctl(self, *args: str, node: str | None = None, timeout: float = 60) -> str:
        """rabbitmqctl in a running node (the first running one if none is named)."""
        names = [node] if node else [n for n in self.nodes() if self._running(n)]
        code, out = self.container(names[0]).exec_run(["rabbitmqctl", "-q", *args])
        if code != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {names[0]}: {out.decode()}")
        return str(out.decode())

    def nodes(self) -> tuple[str, ...]:
        return NODES if self.cluster else ("rabbitmq",)

    def _running(self, service: str) -> bool:
        container = self.container(service)
        container.reload()
        return bool(container.status == "running")

    def leader(self, queue: str) -> str:
        """The node (service name) that leads quorum queue `queue`."""
        for line in self.rabbitmqctl("list_queues", "name", "leader").splitlines():
            name, _, leader = line.partition("\t")
            if name == queue:
                return leader.strip().removeprefix("rabbit@")
        raise LookupError(f"no queue {queue}")

    def members(self, queue: str) -> list[str]:
        listing = json.loads(self.rabbitmqctl("list_queues", "name", "members",
                                              "--formatter", "json"))
        (entry,) = [q for q in listing if q["name"] == queue]
        return sorted(str(m).removeprefix("rabbit@") for m in entry["members"])

    def connections(self, user: str) -> Counter[str]:
        """How many connections `user` has on each node (a connection's pid names it)."""
        found: Counter[str] = Counter()
        for line in self.rabbitmqctl("list_connections", "user", "pid").splitlines():
            name, _, pid = line.partition("\t")
            node = re.match(r"<rabbit@([^.]+)\.", pid.strip())
            if name == user and node:
                found[node.group(1)] += 1
        return found

    def wait_for_cluster(self, timeout: float = 240) -> None:
        """Until every node runs, the cluster counts them all, and each task queue has a
        member on each, all in step: losing any one node leaves it a majority."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.wait(timeout=max(deadline - time.monotonic(), 10))
                status = self.rabbitmqctl("cluster_status", "--formatter", "json")
                running = json.loads(status)["running_nodes"]
                if len(running) == len(self.nodes()) and all(
                        len(self.members(q)) == len(self.nodes()) for q in
                        TASK_QUEUES) and all(self.in_step(q) for q in TASK_QUEUES):
                    return
            except (RuntimeError, ValueError, LookupError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not come back whole within {timeout} s")
            time.sleep(2)

    def in_step(self, queue: str) -> bool:
        """Whether every member of quorum queue `queue` runs (leader or follower) and has
        applied all the leader committed."""
        status = json.loads(self.rabbitmq_queues("quorum_status", queue))
        states = {m["Raft State"] for m in status}
        applied = {m.get("Last Applied") for m in status} | {m.get("Commit Index")
                                                              for m in status}
        return (len(status) == len(self.nodes()) and states <= {"leader", "follower"}
                and "leader" in states and len(applied) == 1)

    def rabbitmq_queues(self, *args: str) -> str:
        """rabbitmq-queues ARGS --formatter json in the first running node."""
        name = next(n for n in self.nodes() if self._running(n))
        code, out = self.container(name).exec_run(["rabbitmq-queues", "-q", *args,
                                                   "--formatter", "json"])
        if code != 0:
            raise RuntimeError(f"rabbitmq-queues {' '.join(args)} on {name}: {out.decode()}")
        return str(out.decode())

    def kill(self, service: str) -> None:
        """SIGKILL the container: a host lost, no goodbye."""
        self.container(service).kill()

    def start(self, service: str) -> None:
        self.container(service).start()

    def cut(self, service: str, seconds: float) -> None:
        """Take the container off the stack's network for `seconds`, then put it back under
        its name (Docker may give it another address), as a network partition that heals."""
        network = self.client.networks.get(self.network)
        container = self.container(service)
        network.disconnect(container)
        time.sleep(seconds)
        network.connect(container, aliases=[service])

    # workers ----------------------------------------------------------------------------

    def succeeded(self, service: str, since: float) -> list[str]:
        """Task ids the workers of `service` logged as succeeded since `since` (epoch s)."""
        ids = []
        for container in self.containers(service, stopped=True):
            logs = container.logs(since=int(since)).decode(errors="replace")
            ids += [task_id for _, task_id in _SUCCEEDED.findall(logs)]
        return ids


def duplicates(task_ids: Iterable[str]) -> int:
    """Runs beyond the first of each task (at-least-once: a task may run twice)."""
    counts = Counter(task_ids)
    return sum(n - 1 for n in counts.values())
