"""Every contract has a faithful implementation, and each computes what its contract says."""

from __future__ import annotations

import pytest

from celery_tasks.core.contract import check_implementation
from celery_tasks.tasks import CONTRACTS
from consumer.implementations import (
    IMPLEMENTATIONS,
    CountPrimesWorker,
    DivideWorker,
    MagicWorker,
    SleepEchoWorker,
)


def test_every_contract_is_implemented() -> None:
    assert set(IMPLEMENTATIONS) == set(CONTRACTS)
    for name, impl in IMPLEMENTATIONS.items():
        check_implementation(impl)
        assert impl.contract is CONTRACTS[name]


def test_magic_task_returns_the_sum() -> None:
    assert MagicWorker().run(1, 2, 3) == 6


@pytest.mark.parametrize(("limit", "primes"), [(0, 0), (2, 0), (3, 1), (10, 4), (100, 25),
                                               (1_000_000, 78_498)])
def test_count_primes_counts_primes_below_the_limit(limit: int, primes: int) -> None:
    assert CountPrimesWorker().run(limit) == primes


def test_count_primes_refuses_a_limit_too_large_to_hold() -> None:
    with pytest.raises(ValueError, match="at most"):
        CountPrimesWorker().run(CountPrimesWorker.max_limit + 1)


def test_sleep_echo_echoes_the_payload() -> None:
    assert SleepEchoWorker().run(0.01, "hello") == "hello"
    with pytest.raises(ValueError, match="negative"):
        SleepEchoWorker().run(-1, "x")


def test_divide_divides_and_fails_on_zero() -> None:
    assert DivideWorker().run(7, 2) == 3.5
    with pytest.raises(ZeroDivisionError):
        DivideWorker().run(1, 0)
