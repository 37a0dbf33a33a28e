"""Faults of a three-node RabbitMQ 4.3 cluster and of worker hosts, on the compose stack
(docker-compose.cluster.yml), each during a batch of 2,000 tasks sent by the producer
service: every task completes, none is lost, runs beyond the first are counted (delivery is
at least once), and the producer exits 0."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.compose import Stack, duplicates
from tests.test_compose import check_roles, monitoring_up, queue_depths

pytestmark = pytest.mark.timeout(1800)

COUNT = 2000
BATCH = ("count_primes", "50000", "--count", str(COUNT), "--json", "--timeout", "600")


@pytest.fixture
def whole(cluster: Stack) -> Iterator[Stack]:
    """The cluster with every node up and in it, every task queue on all three; nodes a
    test stopped are started again afterwards."""
    cluster.wait_for_cluster()
    yield cluster
    for node in cluster.nodes():
        container = cluster.container(node)
        container.reload()
        if container.status != "running":
            container.start()


@dataclass
class Outcome:
    """A batch that met a fault: its summary, the producer's exit, what the workers ran."""

    summary: dict
    returncode: int
    stderr: str
    ran: list[str]
    seconds: float

    @property
    def lost(self) -> int:
        return COUNT - self.summary["succeeded"] - self.summary["failed"]

    @property
    def duplicates(self) -> int:
        return duplicates(self.ran)


def batch_with(stack: Stack, fault: Callable[[], str], worker: str = "count-primes",
               after: int = 200) -> tuple[Outcome, str]:
    """Send the batch; once `after` tasks ran, apply `fault` (it says what it did); wait
    for the producer."""
    since = time.time() - 1
    started = time.monotonic()
    producer = stack.producer(*BATCH)
    deadline = time.monotonic() + 180
    while len(stack.succeeded(worker, since)) < after:
        assert producer.poll() is None, producer.communicate()
        assert time.monotonic() < deadline, "the batch did not get under way"
        time.sleep(0.5)
    what = fault()
    out, err = producer.communicate(timeout=900)
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {"succeeded": 0, "failed": 0}
    ran = stack.succeeded(worker, since)
    settle = time.monotonic() + 15  # a worker logs a success just after sending its result
    while len(set(ran)) < summary["succeeded"] and time.monotonic() < settle:
        time.sleep(0.5)
        ran = stack.succeeded(worker, since)
    return Outcome(summary, producer.returncode, err, ran, time.monotonic() - started), what


def held(stack: Stack, node: str) -> str:
    """What a node holds of the batch: the queue's leader, the producer's connection, how
    many of the workers' connections."""
    roles = ["leads count_primes"] if stack.leader("count_primes") == node else []
    if node in stack.connections("producer"):
        roles.append("the producer's connection")
    roles.append(f"{stack.connections('worker')[node]} worker connections")
    return ", ".join(roles)


def check(outcome: Outcome, record: Callable[..., None], what: str) -> None:
    record(COUNT, outcome.summary["succeeded"], outcome.lost,
           f"{what}; {outcome.summary.get('republished', 0)} sent again, "
           f"{outcome.duplicates} run twice; {outcome.seconds:.0f} s")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert (outcome.summary["succeeded"], outcome.summary["failed"],
            outcome.summary["pending"]) == (COUNT, 0, 0)
    assert len(set(outcome.ran)) == COUNT  # each task ran, on some worker


def test_killing_the_node_the_producer_is_connected_to_loses_nothing(
    whole: Stack, record: Callable[..., None]
) -> None:
    def kill_producers_node() -> str:
        (node,) = whole.connections("producer")  # the batch has one connection
        roles = held(whole, node)
        whole.kill(node)
        return f"docker kill {node} ({roles})"

    outcome, what = batch_with(whole, kill_producers_node)
    check(outcome, record, what)


def test_killing_the_leader_of_the_task_queue_loses_nothing(
    whole: Stack, record: Callable[..., None]
) -> None:
    def kill_leader() -> str:
        node = whole.leader("count_primes")
        roles = held(whole, node)
        whole.kill(node)
        return f"docker kill {node} ({roles})"

    outcome, what = batch_with(whole, kill_leader)
    check(outcome, record, what)


def test_a_node_cut_off_the_network_for_10_s_loses_nothing(
    whole: Stack, record: Callable[..., None]
) -> None:
    def cut_leader() -> str:
        node = whole.leader("count_primes")
        roles = held(whole, node)
        whole.cut(node, seconds=10)
        return f"{node} ({roles}) off the network 10 s"

    outcome, what = batch_with(whole, cut_leader)
    check(outcome, record, what)


def test_a_worker_host_killed_mid_batch_leaves_its_tasks_to_the_others(
    whole: Stack, record: Callable[..., None]
) -> None:
    """Three replicas of the count-primes service, each a host of its own (hostname and
    Celery node name); one is killed with tasks in hand, the other two finish them."""
    scaled = whole.compose("up", "-d", "--no-recreate", "--scale", "count-primes=3")
    assert scaled.returncode == 0, scaled.stderr
    whole.wait()
    replicas = whole.containers("count-primes")
    hosts = {c.attrs["Config"]["Hostname"] for c in replicas}
    assert len(replicas) == 3 and len(hosts) == 3
    victim = replicas[0]
    try:
        def kill_a_replica() -> str:
            victim.kill()
            return f"docker kill of worker host {victim.attrs['Config']['Hostname']} (1 of 3)"

        since = time.time()
        outcome, what = batch_with(whole, kill_a_replica, after=300)
        check(outcome, record, what)
        victim.reload()
        assert victim.status != "running" or victim.attrs["RestartCount"] > 0
        for survivor in replicas[1:]:  # both finished tasks the victim had held
            assert "succeeded" in survivor.logs(since=int(since)).decode(errors="replace")
    finally:
        whole.compose("up", "-d", "--scale", "count-primes=1")


def test_the_cluster_gives_each_role_only_its_permissions(whole: Stack) -> None:
    check_roles(whole)


def test_prometheus_scrapes_the_three_nodes_and_counts_a_queue_once_by_its_leader(
    whole: Stack
) -> None:
    """`make up CLUSTER=1 MONITORING=1`: every worker and both plugin jobs of all three
    nodes are up; a quorum queue's depth is one series, from the node that leads it (a sum
    over nodes counts each message once)."""
    with monitoring_up(whole) as (port, _):
        leader = whole.leader("count_primes")
        deadline = time.monotonic() + 60  # a scrape every 5 s; the leader may have just moved
        while True:
            series = queue_depths(port, "count_primes")
            instances = [s["metric"]["instance"] for s in series]
            if instances == [f"{leader}:15692"] or time.monotonic() > deadline:
                break
            time.sleep(2)
            leader = whole.leader("count_primes")
    assert instances == [f"{leader}:15692"], (instances, leader)
