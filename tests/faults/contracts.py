"""Test-only contracts and implementations whose failures are the point.

Each implementation counts its attempts in a file (FAULTS_STATE_DIR/KEY.attempts), so a
test can tell how many times a message was run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from celery_tasks.core.contract import Contract, not_implemented


def count_attempt(key: str) -> int:
    path = Path(os.environ.get("FAULTS_STATE_DIR", "/tmp")) / f"{key}.attempts"
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    return attempts


class FlakyTask(Contract):
    """Fails with a transient ConnectionError `failures` times, then returns the attempt."""

    name = "faults_flaky"
    transient_errors = (ConnectionError,)
    max_retries = 4
    retry_backoff = 1
    retry_backoff_max = 4

    def run(self, key: str, failures: int) -> int:
        raise not_implemented(type(self))


class FailTask(Contract):
    """Fails every time with an error that is not transient."""

    name = "faults_fail"

    def run(self, key: str) -> str:
        raise not_implemented(type(self))


class CrashTask(Contract):
    """Kills the process that runs it, every time."""

    name = "faults_crash"
    max_retries = 2

    def run(self, key: str) -> str:
        raise not_implemented(type(self))


class SlowTask(Contract):
    """Sleeps; with `stubborn`, ignores the soft time limit and runs into the hard one."""

    name = "faults_slow"
    soft_time_limit = 1
    time_limit = 2

    def run(self, key: str, seconds: float, stubborn: bool) -> str:
        raise not_implemented(type(self))


class FlakyWorker(FlakyTask):
    def run(self, key: str, failures: int) -> int:
        attempt = count_attempt(key)
        if attempt <= failures:
            raise ConnectionError(f"{key}: attempt {attempt} failed (transient)")
        return attempt


class FailWorker(FailTask):
    def run(self, key: str) -> str:
        count_attempt(key)
        raise ValueError(f"{key}: this task always fails")


class CrashWorker(CrashTask):
    def run(self, key: str) -> str:
        count_attempt(key)
        time.sleep(0.2)  # crash in the middle of the work, as real crashes do
        os._exit(13)


class SlowWorker(SlowTask):
    def run(self, key: str, seconds: float, stubborn: bool) -> str:
        count_attempt(key)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except SoftTimeLimitExceeded:
                if not stubborn:
                    raise
        return key


IMPLEMENTATIONS: dict[str, type[Contract]] = {
    cls.name: cls for cls in (FlakyWorker, FailWorker, CrashWorker, SlowWorker)
}


class BadReturnTask(Contract):
    """Promises an int."""

    name = "faults_bad_return"

    def run(self, x: int) -> int:
        raise not_implemented(type(self))


class BadReturnWorker(BadReturnTask):
    """A faulty implementation: returns text where the contract promises an int."""

    def run(self, x: int) -> int:
        return str(x)  # type: ignore[return-value]  # the fault under test


IMPLEMENTATIONS[BadReturnWorker.name] = BadReturnWorker


class RepeatTask(Contract):
    """A result far larger than the call: `text` repeated `times` times."""

    name = "faults_repeat"

    def run(self, text: str, times: int) -> str:
        raise not_implemented(type(self))


class RepeatWorker(RepeatTask):
    def run(self, text: str, times: int) -> str:
        return text * times


IMPLEMENTATIONS[RepeatWorker.name] = RepeatWorker
