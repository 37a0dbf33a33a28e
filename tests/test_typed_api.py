"""The typed producer API: mypy checks calls against the contract; results come back typed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.processes import PRODUCER_DIR, ROOT, Worker, clean_env

GOOD = """
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

magic = remote(MagicCeleryTask.run)
total: int = magic(1, 2, 3)
pending = magic.send(arg1=1, arg2=2, arg3=3)
later: int = pending.get(timeout=30)
print(total, later)
"""
BAD = """
from celery_tasks.remote import remote
from celery_tasks.tasks import MagicCeleryTask

magic = remote(MagicCeleryTask.run)
total: int = magic(1, 2, "3")
text: str = magic(1, 2, 3)
"""


def mypy(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    sample = tmp_path / "sample.py"
    sample.write_text(source)
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                           str(ROOT / "pyproject.toml"), "--no-incremental", str(sample)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_accepts_calls_that_match_the_contract(tmp_path: Path) -> None:
    out = mypy(GOOD, tmp_path)
    assert out.returncode == 0, out.stdout


def test_mypy_rejects_a_wrong_argument_type_and_a_wrong_result_type(tmp_path: Path) -> None:
    out = mypy(BAD, tmp_path)
    assert out.returncode == 1
    assert 'Argument 3 to "__call__" of "Remote" has incompatible type "str"; expected "int"' in (
        out.stdout)
    assert 'Incompatible types in assignment (expression has type "int", variable has type ' \
           '"str")' in out.stdout


def test_the_typed_api_sends_and_returns_the_typed_result(
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    start_worker("unique_magic_task")
    out = subprocess.run([sys.executable, "-c", GOOD], cwd=PRODUCER_DIR,
                         env=clean_env(broker_env), capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "6 6"), out.stderr
