"""Typed workflows across contracts (celery_tasks.canvas): chain, group and chord with real
workers, each step on its own contract's workers; mypy on good and bad chains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.processes import PRODUCER_DIR, ROOT, Worker, clean_env, run_producer, run_script
from harness.services import Services
from tests.conftest import Broker
from tests.test_broker_unreachable import unreachable_env
from tests.test_contract_skew import skewed_clone
from tests.test_typed_api import mypy

PRELUDE = """
import json, sys
from celery_tasks import chain, chord, group
from celery_tasks.core.errors import CeleryTasksError
from celery_tasks.remote import remote
from celery_tasks.tasks import (CountPrimesTask, DivideTask, MagicCeleryTask, SleepEchoTask,
                                SumNumbersTask)

magic, primes = remote(MagicCeleryTask.run), remote(CountPrimesTask.run)
divide, echo = remote(DivideTask.run), remote(SleepEchoTask.run)
total = remote(SumNumbersTask.run)
"""

GOOD = PRELUDE + """
three: int = chain(magic.s(1, 2, 3), primes.s(), magic.s(10, 100)).delay().get(timeout=60)
mixed: str = chain(magic.s(1, 1, 1), echo.s("done")).delay().get()
ignored: float = chain(magic.s(1, 2, 3), divide.si(1.0, 4.0)).delay().get()
floats: float = chain(divide.s(1.0, 2.0), divide.s(2.0)).delay().get()
many: list[int] = group(magic.s(i, i, i) for i in range(10)).delay().get()
listed: list[int] = group(magic.s(1, 2, 3), primes.s(10)).delay().get()
summed: int = chord([magic.s(1, 2, 3), magic.s(4, 5, 6)], total.s()).delay().get()
at_once: int = chord(group(magic.s(i, i, i) for i in range(3)))(total.s()).get()
"""

#: Each line is a mistake mypy must report (line numbers are checked one by one).
BAD_LINES = [
    'chain(echo.s(0.1, "x"), primes.s())',         # a str result into an int parameter
    "chain(divide.s(1.0, 2.0), primes.s())",       # a float result into an int parameter
    "chain(magic.s(1, 2, 3), magic.s(1, 2, 3))",   # step 2 complete: one argument too many
    "chain(primes.s(), magic.s(1, 2))",            # step 1 incomplete: no step before it
    "chord([magic.s(1, 2, 3)], primes.s())",       # a list of results into an int parameter
    'magic.s(1, 2, "3")',                          # a wrong argument type
    "group(primes.s())",                           # a group member missing an argument
    'text: str = chain(magic.s(1, 2, 3), primes.s()).delay().get()',  # the result is int
]


def test_mypy_accepts_typed_workflows(tmp_path: Path) -> None:
    out = mypy(GOOD, tmp_path)
    assert out.returncode == 0, out.stdout


def test_mypy_rejects_each_ill_typed_workflow(tmp_path: Path) -> None:
    source = PRELUDE + "\n".join(BAD_LINES) + "\n"
    out = mypy(source, tmp_path)
    assert out.returncode == 1, out.stdout
    first = PRELUDE.count("\n") + 1
    flagged = {int(line.split(":")[1]) for line in out.stdout.splitlines()
               if ": error:" in line}
    for number, line in enumerate(BAD_LINES, first):
        assert number in flagged, f"mypy let through: {line}\n{out.stdout}"


def run(source: str, env: dict[str, str], timeout: float = 120) -> list[str]:
    """Run producer code (after PRELUDE); its stdout lines, asserting it exited 0."""
    out = run_script(PRELUDE + source, env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def workers(start_worker: Callable[..., Worker]) -> Callable[..., dict[str, Worker]]:
    def start(*names: str, env: dict[str, str] | None = None) -> dict[str, Worker]:
        return {name: start_worker(name, env=env, pool="threads", concurrency=4)
                for name in names}
    return start


def test_a_chain_of_three_steps_over_two_contracts_runs_each_step_on_its_own_workers(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    started = workers("unique_magic_task", "count_primes")
    lines = run("""
sent = chain(magic.s(1, 2, 3), primes.s(), magic.s(10, 100)).delay()
print(sent.get(timeout=60))
print(json.dumps(sent.ids))
""", broker_env)
    assert lines[0] == "113"  # 1+2+3 = 6; 3 primes below 6; 3+10+100
    first, second, third = json.loads(lines[1])
    assert {i for _, i in started["unique_magic_task"].received()} == {first, third}
    assert [i for _, i in started["count_primes"].received()] == [second]


def test_a_group_of_1000_comes_back_in_order_through_the_batch_path(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    workers("unique_magic_task")
    lines = run("""
import celery_tasks.canvas as canvas
from celery_tasks.core.contract import Contract
streams, single = [], []
stream, apply_async = canvas.send_stream, Contract.apply_async
canvas.send_stream = lambda *a, **k: streams.append(1) or stream(*a, **k)
Contract.apply_async = lambda *a, **k: single.append(1) or apply_async(*a, **k)
results = group(magic.s(i, i, i) for i in range(1000)).delay().get(timeout=120)
print(results == [3 * i for i in range(1000)], len(streams), len(single))
""", broker_env)
    assert lines == ["True 1 0"]  # one batch stream, not one publish (and confirm) per call


def test_a_group_with_failing_members_returns_every_other_result_and_their_errors(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    workers("divide", "unique_magic_task")
    lines = run("""
sent = group([divide.s(1.0, 2.0), divide.s(1.0, 0.0), magic.s(1, 2, 3)]).delay()
values = sent.get(timeout=60, propagate=False)
print(json.dumps([v if not isinstance(v, CeleryTasksError) else type(v).__name__
                  for v in values]))
print(values[1])
try:
    sent.get(timeout=60)
except CeleryTasksError as exc:
    print(type(exc).__name__, exc.exit_code, len(exc.results))
""", broker_env)
    assert json.loads(lines[0]) == [0.5, "TaskFailed", 6]
    assert lines[1].startswith("group member 2 of 3, divide[")
    assert lines[1].endswith("raised ZeroDivisionError: float division by zero")
    assert lines[2] == "GroupFailed 1 3"


def test_a_step_that_raises_stops_the_chain_and_the_error_names_it(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    started = workers("unique_magic_task", "divide")
    lines = run("""
sent = chain(magic.s(1, 2, 3), divide.s(0.0), divide.s(2.0)).delay()
try:
    sent.get(timeout=60)
except CeleryTasksError as exc:
    print(type(exc).__name__, exc)
print(sent.ids[1])
""", broker_env)
    assert lines[0] == (f"TaskFailed chain step 2 of 3, divide[{lines[1]}], raised "
                        "ZeroDivisionError: float division by zero")
    assert len(started["divide"].received()) == 1  # step 3 never ran


def test_the_cli_runs_a_chain_with_then(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    workers("unique_magic_task", "count_primes", "divide")
    out = run_producer("unique_magic_task", "1", "2", "3", "--then", "count_primes",
                       "--then", "divide", "2", env=broker_env)
    assert (out.returncode, out.stdout.strip()) == (0, "1.5"), out.stderr
    failed = run_producer("unique_magic_task", "1", "2", "3", "--then", "divide", "0",
                          "--json", env=broker_env)
    report = json.loads(failed.stdout)
    assert failed.returncode == 1
    assert report["chain"] == ["unique_magic_task", "divide"] and len(report["ids"]) == 2
    assert report["error"].startswith("chain step 2 of 2, divide[")
    assert failed.stderr.startswith("error: chain step 2 of 2, divide[")


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["--then", "nope"], 4, "unknown task 'nope'"),
    (["--then", "divide", "x"], 3, "argument b must be float, got str 'x'"),
    (["--then", "divide", "1", "2"], 3, "less its first parameter"),
    (["--then", "divide", "1", "--count", "2"], 2, "takes neither --count nor --no-wait"),
])
def test_a_bad_then_is_refused_before_anything_is_sent(
    argv: list[str], code: int, says: str, broker: Broker, broker_env: dict[str, str]
) -> None:
    out = run_producer("unique_magic_task", "1", "2", "3", *argv, env=broker_env)
    assert out.returncode == code and says in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1
    assert not broker.depth("unique_magic_task")  # nothing published


@pytest.fixture(params=["redis", "postgresql"])
def chord_env(request: pytest.FixtureRequest, services: Services,
              broker_env: dict[str, str]) -> dict[str, str]:
    url = services.redis(14) if request.param == "redis" else services.postgres_backend
    return {**broker_env, "CELERY_RESULT_BACKEND": url}


def test_a_chord_and_a_chain_on_redis_and_postgresql(
    workers: Callable[..., dict[str, Worker]], chord_env: dict[str, str]
) -> None:
    workers("unique_magic_task", "count_primes", "sum_numbers", env=chord_env)
    lines = run("""
print(chord((magic.s(i, i, i) for i in range(10)), total.s()).delay().get(timeout=60))
print(chain(magic.s(1, 2, 3), primes.s(), magic.s(10, 100)).delay().get(timeout=60))
try:
    chord([magic.s(1, 2, 3), primes.s(10 ** 9)], total.s()).delay().get(timeout=60)
except CeleryTasksError as exc:
    print(type(exc).__name__, exc)
""", chord_env)
    assert lines[:2] == ["135", "113"]  # 3 * (0 + 1 + ... + 9); a chain on this backend
    assert lines[2].startswith("TaskFailed chord body sum_numbers[")
    assert "did not run: header member 2 of 2, count_primes[" in lines[2]
    assert lines[2].endswith("raised ValueError: limit must be at most 200000000, "
                             "got 1000000000")


def test_a_chord_on_rpc_is_refused_before_publishing(
    broker: Broker, broker_env: dict[str, str]
) -> None:
    out = run_script(PRELUDE + "chord([magic.s(1, 2, 3)], total.s()).delay()\n",
                     env=broker_env)
    assert out.returncode == 1 and "ConfigError" in out.stderr
    assert ("a chord needs a result backend that counts its header's results, and "
            "CELERY_RESULT_BACKEND is rpc://, which cannot") in out.stderr
    assert not broker.depth("unique_magic_task") and not broker.depth("sum_numbers")


def test_a_later_step_on_an_incompatible_worker_ends_in_contract_mismatch(
    tmp_path: Path, workers: Callable[..., dict[str, Worker]],
    start_worker: Callable[..., Worker], broker_env: dict[str, str]
) -> None:
    """The divide worker holds a newer contract with a new required parameter; step 2,
    published by the magic worker, carries the producer's contract and is refused."""
    newer = "    def run(self, a: float, b: float, c: float) -> float:"
    impl = "    def run(self, a: float, b: float, c: float) -> float:\n        return a / b / c"
    clone, _, _ = skewed_clone(tmp_path, newer, impl, stale="producer")
    workers("unique_magic_task")
    skewed = start_worker("divide", cwd=clone / "consumer")
    lines = run("""
sent = chain(magic.s(1, 2, 3), divide.s(2.0)).delay()
try:
    print(sent.get(timeout=60))
except CeleryTasksError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
""", broker_env)
    assert lines[0].startswith("ContractMismatch 11 chain step 2 of 2, divide[")
    assert "cannot call the worker's" in lines[0]
    assert len(skewed.received()) == 1


def test_a_worker_killed_mid_chain_does_not_lose_the_chain(
    workers: Callable[..., dict[str, Worker]], start_worker: Callable[..., Worker],
    broker_env: dict[str, str]
) -> None:
    """Step 2 sleeps 3 s; its worker is SIGKILLed while running it, and a new one runs it
    and hands the chain on to step 3 (at-least-once across steps)."""
    workers("unique_magic_task")
    first = start_worker("sleep_echo")
    chained = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + 'print(chain(magic.s(1, 1, 1), echo.s("done"), '
         "magic.si(1, 2, 3)).delay().get(timeout=120))"],
        cwd=PRODUCER_DIR, env=clean_env(broker_env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not first.received() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.received(), first.log
    first.kill()  # mid-step: it sleeps 3 s
    second = start_worker("sleep_echo")
    out, err = chained.communicate(timeout=150)
    assert (chained.returncode, out.strip()) == (0, "6"), err
    assert [i for _, i in second.received()] == [i for _, i in first.received()]


def doc_blocks(path: Path, marker: str) -> str:
    """The code blocks (indented 4 spaces) of `path` that hold `marker`, or `remote(` before
    it, as one script: each `... .get()  # VALUE` line prints its value and VALUE."""
    blocks = re.findall(r"\n\n((?: {4}.*\n|\n)+)", path.read_text())
    chosen = [b for b in blocks if marker in b or "= remote(" in b]
    source = textwrap.dedent("".join(chosen[:chosen.index(
        next(b for b in chosen if marker in b)) + 1]))
    return re.sub(r"^(.*\.get\(\))\s+#\s*(.*)$", r"print(repr(\1), '#', '\2')", source,
                  flags=re.M)


def shown_values(lines: list[str]) -> None:
    """Every `value # shown` line printed by a doc_blocks script agrees with its comment."""
    checked = [line.split(" # ", 1) for line in lines if " # " in line]
    assert checked
    for value, shown in checked:
        expected = shown.split("  ")[0].strip()
        assert value == expected or (expected.endswith("...]")
                                     and value.startswith(expected[:-4])), (value, shown)


def test_readme_workflow_example_runs_as_written(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    workers("unique_magic_task", "count_primes")
    source = doc_blocks(ROOT / "README.md", "from celery_tasks import chain")
    out = run_script(source, env=broker_env)
    assert out.returncode == 0, out.stderr
    shown_values(out.stdout.splitlines())


def test_the_workflows_doc_example_runs_as_written(
    workers: Callable[..., dict[str, Worker]], services: Services,
    broker_env: dict[str, str]
) -> None:
    env = {**broker_env, "CELERY_RESULT_BACKEND": services.redis(13)}
    workers("unique_magic_task", "count_primes", "divide", "sum_numbers", env=env)
    source = doc_blocks(ROOT / "docs" / "workflows.md", "from celery_tasks import chain")
    out = run_script(source, env=env)
    assert out.returncode == 0, out.stderr
    shown_values(out.stdout.splitlines())


def test_a_result_the_next_step_cannot_take_is_refused_by_its_worker_before_it_runs(
    workers: Callable[..., dict[str, Worker]], broker_env: dict[str, str]
) -> None:
    """mypy rejects this chain; sent anyway, the float reaches count_primes's worker,
    which refuses it (ContractViolation): run() never sees it."""
    workers("divide", "count_primes")
    lines = run("""
try:
    chain(divide.s(1.0, 2.0), primes.s()).delay().get(timeout=60)  # type: ignore
except CeleryTasksError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
""", broker_env)
    assert lines[0].startswith("ContractViolation 12 chain step 2 of 2, count_primes[")
    assert "argument limit must be int, got float 0.5" in lines[0]


@pytest.mark.parametrize("workflow", ["chain(magic.s(1, 2, 3), primes.s())",
                                      "group(magic.s(i, 2, 3) for i in range(3))"])
def test_a_workflow_without_a_broker_is_exit_5_in_one_line(workflow: str) -> None:
    out = run_script(PRELUDE + f"""
try:
    {workflow}.delay()
except CeleryTasksError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
""", env=unreachable_env("3"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BrokerUnreachable 5 ") and len(out.stdout.splitlines()) == 1


def test_a_bad_then_is_exit_3_before_the_broker_is_reached() -> None:
    out = run_producer("unique_magic_task", "1", "2", "3", "--then", "divide", "x",
                       env=unreachable_env("30"), timeout=20)
    assert out.returncode == 3 and "argument b must be float" in out.stderr, out.stderr
