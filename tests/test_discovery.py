"""Live worker discovery (docs/contracts.md#live-workers): `python -m celery_tasks status`
with workers of two pins, and `python -m producer --require-worker` with no worker, an
incompatible one and a good one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.processes import PRODUCER_DIR, ROOT, Worker, clean_env, run_producer
from tests.conftest import Broker
from tests.test_broker_unreachable import unreachable_env
from tests.test_contract_skew import skewed_clone

DIGITS = "    def run(self, a: float, b: float, digits: int = 3) -> float:"
DIGITS_IMPL = DIGITS + "\n        return round(a / b, digits)"
THIRD = "    def run(self, a: float, b: float, c: float) -> float:"
THIRD_IMPL = THIRD + "\n        return a / b / c"


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery_tasks", "status", *args],
                          cwd=PRODUCER_DIR, env=clean_env(env), capture_output=True,
                          text=True, timeout=60)


def test_status_lists_workers_of_two_pins_and_whether_each_can_be_called(
    tmp_path: Path, start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    clone, old, new = skewed_clone(tmp_path, DIGITS, DIGITS_IMPL, stale="producer")
    ours = start_worker("divide", pool="threads")
    theirs = start_worker("divide", pool="threads", cwd=clone / "consumer")
    # Both workers must answer within the window: 3 s, not the default 1 s, on a loaded host.
    out = status(broker_env, "--json", "--timeout", "3")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    nodes = {w["node"]: w for w in report["workers"]}
    assert len(nodes) == 2
    commits = {w["commit"] for w in nodes.values()}
    assert commits == {old, new}  # our pin, and the clone's newer one
    prints = {w["contracts"]["divide"]["fingerprint"] for w in nodes.values()}
    assert report["contracts"]["divide"] in prints and len(prints) == 2
    # An optional parameter added: this producer's contract can call both.
    assert all(w["contracts"]["divide"]["callable"] for w in nodes.values())
    text = status(broker_env, "--timeout", "3").stdout
    assert "divide " in text and "2 live" in text
    for worker in (ours, theirs):
        pid = worker.process.pid  # type: ignore[union-attr]
        assert re.search(rf"divide\.{pid}@\S+  host \S+  celery_tasks [0-9a-f]{{12}}  "
                         rf"[0-9a-f]{{16}}  can call", text), text
    assert "unique_magic_task 8" in text and "no live worker" in text


def test_require_worker_sends_only_when_a_live_worker_can_run_the_call(
    tmp_path: Path, start_worker: Callable[..., Worker], broker: Broker,
    broker_env: dict[str, str]
) -> None:
    nobody = run_producer("divide", "1", "2", "--require-worker", env=broker_env)
    assert nobody.returncode == 14
    assert nobody.stderr == ("error: no live worker runs divide (none answered within 1 s); "
                             "nothing was sent\n")
    assert not broker.depth("divide")

    clone, _, new = skewed_clone(tmp_path, THIRD, THIRD_IMPL, stale="producer")
    incompatible = start_worker("divide", pool="threads", cwd=clone / "consumer")
    refused = run_producer("divide", "1", "2", "--require-worker", env=broker_env)
    assert refused.returncode == 14 and len(refused.stderr.splitlines()) == 1
    assert "no live worker of divide can run this call, nothing was sent" in refused.stderr
    assert f"(celery_tasks {new}): the worker requires parameter 'c'" in refused.stderr
    assert not broker.depth("divide") and not incompatible.received()

    incompatible.kill()
    start_worker("divide", pool="threads")
    good = run_producer("divide", "1", "2", "--require-worker", env=broker_env)
    assert (good.returncode, good.stdout.strip()) == (0, "0.5"), good.stderr


def test_readme_change_a_contract_safely_commands_run_as_written(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    section = (ROOT / "README.md").read_text().split("## Change a contract safely")[1]
    commands = [line.split("#")[0].split() for line in section.split("\n## ")[0].splitlines()
                if line.startswith("    python -m ")]
    assert [c[:3] for c in commands] == [["python", "-m", "celery_tasks"]] * 2 + [
        ["python", "-m", "producer"]]
    start_worker("divide", pool="threads")
    for command in commands:
        folder = ROOT if command[2] == "celery_tasks" and command[3] == "diff" else PRODUCER_DIR
        out = subprocess.run([sys.executable, *command[1:]], cwd=folder,
                             env=clean_env(broker_env), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, (command, out.stderr)


def test_status_without_a_broker_is_exit_5_in_one_line() -> None:
    out = status(unreachable_env("3"))
    assert out.returncode == 5 and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("error: ")
