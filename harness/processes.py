"""Start real worker processes and run the real producer script, each from its own folder."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
PRODUCER_DIR = ROOT / "producer"
CONSUMER_DIR = ROOT / "consumer"
_RECEIVED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] received")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a part: ours, minus anything that would redirect its imports."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """One `python -m consumer TASK` process, logging to a file, stopped by `stop()`."""

    def __init__(
        self,
        task: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        concurrency: int = 1,
        pool: str = "prefork",
        extra_args: tuple[str, ...] = (),
        cwd: Path = CONSUMER_DIR,
        module: str = "consumer",
    ) -> None:
        self.task, self.cwd = task, cwd
        self.log_path = log_dir / f"worker-{task}-{time.monotonic_ns()}.log"
        self.argv = [sys.executable, "-m", module, task, f"--concurrency={concurrency}",
                     f"--pool={pool}", *extra_args]
        self.env = clean_env(env)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def launch(self) -> Worker:
        """Start the worker process without waiting for it (see `wait_ready`)."""
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def start(self, ready_timeout: float = 60.0) -> Worker:
        """Start the worker and wait until it says it is ready; raise if it exits first."""
        return self.launch().wait_ready(ready_timeout)

    def wait_ready(self, ready_timeout: float = 60.0) -> Worker:
        """Wait until the worker says it is ready; raise (and stop it) if it exits or lingers."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if " ready." in self.log:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.task} exited with {self.process.returncode}:\n{self.log}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"worker {self.task} not ready within {ready_timeout} s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def received(self) -> list[tuple[str, str]]:
        """(task name, task id) of every message this worker received, from its log."""
        return _RECEIVED.findall(self.log)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once: a crash, not a shutdown."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._log is not None:
            self._log.close()

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown (SIGTERM); SIGKILL the whole process group if it lingers."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):  # pool children, if any are left
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode


def share_venv(clone: Path) -> None:
    """Give a clone of this repository our `.venv`: its parts linked, its own install stamp
    (fresh, so make keeps the venv as it is: our requirements are the clone's)."""
    venv = clone / ".venv"
    venv.mkdir()
    for entry in (ROOT / ".venv").iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()


def kill_all(workers: list[Worker]) -> None:
    """SIGKILL every worker at once: a test's clean-up, where a warm shutdown (about 3 s
    each) would only finish tasks whose queues are deleted next."""
    for worker in workers:
        worker.kill()


def stop_all(workers: list[Worker], timeout: float = 20.0) -> None:
    """Ask every worker to shut down at once, then wait for (or kill) each."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        worker.stop(timeout)


def run_producer(
    *args: str, env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m producer ARGS` from producer/ and capture its output."""
    return run_in_producer("-m", "producer", *args, env=env, timeout=timeout)


def run_script(
    source: str, *args: str, env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run Python `source` (with ARGS) from producer/, as producer code, and capture its
    output."""
    return run_in_producer("-c", source, *args, env=env, timeout=timeout)


def run_in_producer(
    *argv: str, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=PRODUCER_DIR, env=clean_env(env),
        capture_output=True, text=True, timeout=timeout,
    )
