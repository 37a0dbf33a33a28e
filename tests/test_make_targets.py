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


def test_make_targets_use_the_private_engine_while_it_runs(tmp_path: Path) -> None:
    """`make engine` then `make test` needs no export: make finds the engine's socket."""
    show = ["make", "--no-print-directory", "-s", f"ENGINE_DIR={tmp_path}",
            "--eval=show-docker-host: ; @echo \"[$$DOCKER_HOST]\"", "show-docker-host"]
    env = {k: v for k, v in clean_env({}).items() if k != "DOCKER_HOST"}

    def docker_host() -> str:
        out = subprocess.run(show, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert docker_host() == "[]"  # no engine running
    (tmp_path / "docker.sock").touch()  # as `make engine` leaves it while it runs
    system_engine = Path("/var/run/docker.sock").exists()  # then that one is the engine
    assert docker_host() == ("[]" if system_engine else f"[unix://{tmp_path}/docker.sock]")
    env["DOCKER_HOST"] = "tcp://elsewhere:2375"
    assert docker_host() == "[tcp://elsewhere:2375]"  # a DOCKER_HOST given wins
