"""Each task has its own queue: a worker only ever receives the task it was started for."""

from __future__ import annotations

from collections.abc import Callable

from harness.processes import Worker, run_producer
from tests.conftest import Broker


def test_two_workers_each_receive_only_their_own_task(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], broker: Broker
) -> None:
    magic = start_worker("unique_magic_task")
    primes = start_worker("count_primes")
    for args in (["unique_magic_task", "1", "2", "3"], ["count_primes", "50"]):
        out = run_producer(*args, "--count", "10", env=broker_env)
        assert out.returncode == 0, out.stderr

    assert {name for name, _ in magic.received()} == {"unique_magic_task"}
    assert {name for name, _ in primes.received()} == {"count_primes"}
    assert len(magic.received()) == len(primes.received()) == 10

    # A task with no worker of its own waits in its queue; neither worker takes it.
    out = run_producer("divide", "1", "2", "--timeout", "1", env=broker_env)
    assert out.returncode == 6
    assert broker.depth("divide") == 1
    assert all(name != "divide" for w in (magic, primes) for name, _ in w.received())
