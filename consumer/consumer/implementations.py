"""One implementation per contract. Each keeps its contract's `run` signature exactly.

A new implementation is one class here: a subclass of its contract (and of
`WorkerDefaults`, to choose its pool) whose `run` does the work. `IMPLEMENTATIONS` and
`python -m consumer` find it by itself.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

from celery_tasks.core.contract import Contract, implementations_in
from celery_tasks.tasks import (
    CountPrimesTask,
    DivideTask,
    MagicCeleryTask,
    SleepEchoTask,
    SumNumbersTask,
)


class WorkerDefaults:
    """How a worker runs an implementation by default (python -m consumer can override).

    Tiny tasks run best on threads (no inter-process hop) with a few messages prefetched;
    CPU-bound ones on processes, one message at a time; slow waits on many threads.
    Acknowledgement stays late whatever the prefetch, so nothing prefetched is lost.
    """

    pool: ClassVar[str] = "threads"
    concurrency: ClassVar[int | None] = 4
    prefetch_multiplier: ClassVar[int] = 8


class MagicWorker(WorkerDefaults, MagicCeleryTask):
    """The article's worker: the sum of three integers."""


    def run(self, arg1: int, arg2: int, arg3: int) -> int:
        return arg1 + arg2 + arg3


class CountPrimesWorker(WorkerDefaults, CountPrimesTask):
    """A sieve of Eratosthenes: memory and time grow with `limit`."""

    max_limit = 200_000_000  # a bytearray of this size is the most one task may take
    pool, concurrency, prefetch_multiplier = "prefork", None, 1  # CPU-bound: a process a core

    def run(self, limit: int) -> int:
        if limit > self.max_limit:
            raise ValueError(f"limit must be at most {self.max_limit}, got {limit}")
        if limit <= 2:
            return 0
        sieve = bytearray([1]) * limit
        sieve[0] = sieve[1] = 0
        for n in range(2, math.isqrt(limit - 1) + 1):
            if sieve[n]:
                sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
        return sum(sieve)


class SleepEchoWorker(WorkerDefaults, SleepEchoTask):
    """Sleeps, then echoes: slow work that holds a pool slot without using the CPU."""

    pool, concurrency, prefetch_multiplier = "threads", 16, 1

    def run(self, seconds: float, payload: str) -> str:
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        time.sleep(seconds)
        return payload


class DivideWorker(WorkerDefaults, DivideTask):
    """Division; b = 0 raises ZeroDivisionError, which the producer receives."""


    def run(self, a: float, b: float) -> float:
        return a / b


class SumNumbersWorker(WorkerDefaults, SumNumbersTask):
    """The sum of a list: a chord's body."""

    def run(self, numbers: list[int]) -> int:
        return sum(numbers)


#: Every implementation of this module, by task name (see __getattr__).
IMPLEMENTATIONS: dict[str, type[Contract]]


def __getattr__(name: str) -> Any:
    """`IMPLEMENTATIONS`, computed when asked for: every class here that implements a
    contract, wherever it is defined in this module."""
    if name == "IMPLEMENTATIONS":
        return implementations_in(globals(), __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
