"""Local mode: `make worker` in one terminal, `make produce-local` in another, prints 6."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harness.processes import ROOT, clean_env
from tests.conftest import Broker


def test_make_worker_and_make_produce(broker: Broker, broker_env: dict[str, str],
                                      tmp_path: Path) -> None:
    env = clean_env(broker_env)
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(["make", "--no-print-directory", "worker",
                                   "TASK=unique_magic_task"], cwd=ROOT, env=env, stdout=sink,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while " ready." not in log.read_text() and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()
                time.sleep(0.1)
            out = subprocess.run(["make", "--no-print-directory", "produce-local",
                                  "ARGS=unique_magic_task 1 2 3"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip().splitlines()[-1] == "6"
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
