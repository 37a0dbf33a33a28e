"""The task contracts: what each task is called, what it takes and what it returns.

These classes hold no implementation. The consumer subclasses each one and implements
`run` with the same signature; the producer sends tasks through them. Each task has its
own queue, named after the task.

A new task is one class here: a `Contract` subclass with a unique `name` and a typed,
documented `run` that raises `not_implemented`. `CONTRACTS`, the command lines, the
fingerprints and the docs find it by itself.
"""

from __future__ import annotations

from typing import Any

from .core.contract import Contract, contracts_in, not_implemented


class MagicCeleryTask(Contract):
    """The article's task: add three integers."""

    name = "unique_magic_task"

    def run(self, arg1: int, arg2: int, arg3: int) -> int:
        """Return arg1 + arg2 + arg3."""
        raise not_implemented(type(self))


class CountPrimesTask(Contract):
    """CPU-bound work whose cost grows with its argument."""

    name = "count_primes"

    def run(self, limit: int) -> int:
        """Return how many primes are below `limit` (0 for limit <= 2)."""
        raise not_implemented(type(self))


class SleepEchoTask(Contract):
    """Slow work: for time limits and crash tests."""

    name = "sleep_echo"
    soft_time_limit = 60
    time_limit = 65

    def run(self, seconds: float, payload: str) -> str:
        """Sleep `seconds`, then return `payload` unchanged."""
        raise not_implemented(type(self))


class DivideTask(Contract):
    """A task that fails on some input: b = 0 raises ZeroDivisionError."""

    name = "divide"

    def run(self, a: float, b: float) -> float:
        """Return a / b."""
        raise not_implemented(type(self))


class SumNumbersTask(Contract):
    """Adds up a list: the body of a chord, which gets the list of its header's results."""

    name = "sum_numbers"

    def run(self, numbers: list[int]) -> int:
        """Return the sum of `numbers` (0 for an empty list)."""
        raise not_implemented(type(self))


#: Every contract of this module, by task name (see __getattr__).
CONTRACTS: dict[str, type[Contract]]


def __getattr__(name: str) -> Any:
    """`CONTRACTS`: every contract of this module, by task name, wherever it is defined
    in it (computed when asked for, so a class added below this line counts too)."""
    if name == "CONTRACTS":
        return contracts_in(__name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
