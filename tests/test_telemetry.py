"""Traces and metrics across processes: a producer and a worker, a real broker, real files.

Both sides write their spans to one file (CELERY_TASKS_TRACES_FILE: the OpenTelemetry
SDK's console exporter, one JSON span per line); the worker serves Prometheus metrics on
a port of its own (CELERY_TASKS_METRICS_PORT).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import rabbitmq_nodes
from harness.compose import free_port
from harness.processes import Worker, run_producer, run_script
from harness.services import ServiceUnavailable
from tests.conftest import fail_or_skip

Span = dict[str, Any]


def read_spans(path: Path, until: Callable[[list[Span]], bool], timeout: float = 20) -> list[Span]:
    """The spans written so far, once `until` holds (the worker writes its own last)."""
    deadline = time.monotonic() + timeout
    spans: list[Span] = []
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        # Whole lines only: a process may be appending the last one.
        spans = [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]
        if until(spans):
            return spans
        time.sleep(0.1)
    return spans


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s["name"] == name]


def span_id(span: Span) -> str:
    return str(span["context"]["span_id"])


def trace_id(span: Span) -> str:
    return str(span["context"]["trace_id"])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics(port: int, until: Callable[[Samples], bool] = lambda _: True,
            timeout: float = 20) -> Samples:
    """Every sample the worker serves, by name and labels, once `until` holds (the worker
    counts a message when it settles it, just after the caller got its result)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        found = {(s.name, frozenset(s.labels.items())): s.value
                 for family in text_string_to_metric_families(text) for s in family.samples}
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def sample(found: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(value for (n, have), value in found.items()
               if n == name and set(labels.items()) <= have)


@pytest.fixture
def traced(broker_env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The broker's settings with traces written to a file of this test."""
    path = tmp_path / "spans.jsonl"
    # Spans are written in batches: every 100 ms here (the SDK's default is 5 s).
    return {**broker_env, "CELERY_TASKS_TRACES_FILE": str(path),
            "OTEL_BSP_SCHEDULE_DELAY": "100"}, path


def test_a_single_call_is_one_trace_from_publish_to_reply(
    start_worker: Callable[..., Worker], traced: tuple[dict[str, str], Path]
) -> None:
    env, path = traced
    start_worker("unique_magic_task", env=env)
    out = run_producer("unique_magic_task", "1", "2", "3", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "6", out.stderr
    spans = read_spans(path, lambda s: bool(named(s, "reply unique_magic_task"))
                       and bool(named(s, "run/unique_magic_task")))
    (send,) = named(spans, "send unique_magic_task")
    (queued,) = named(spans, "queue unique_magic_task")
    (run,) = named(spans, "run/unique_magic_task")
    (reply,) = named(spans, "reply unique_magic_task")
    assert {trace_id(s) for s in (send, queued, run, reply)} == {trace_id(send)}
    assert send["kind"] == "SpanKind.PRODUCER" and send["parent_id"] is None
    assert queued["parent_id"] == run["parent_id"] == span_id(send)
    assert reply["parent_id"] == span_id(run)
    task_id = send["attributes"]["messaging.message.id"]
    for span in (queued, run, reply):
        assert span["attributes"]["messaging.message.id"] == task_id
    for span in (send, run):
        attributes = span["attributes"]
        assert attributes["celery.task_name"] == "unique_magic_task"
        assert len(attributes["celery_tasks.contract.fingerprint"]) == 16
        assert attributes["celery_tasks.commit"] not in ("", "unknown")
        assert attributes["celery_tasks.outcome"] == "success"
    assert run["attributes"]["celery_tasks.retries"] == 0
    assert (run["attributes"]["celery_tasks.sender.fingerprint"]
            == send["attributes"]["celery_tasks.contract.fingerprint"])
    assert queued["start_time"] <= run["start_time"] <= reply["start_time"] <= send["end_time"]


def test_a_batch_is_one_trace_with_a_run_per_call(
    start_worker: Callable[..., Worker], traced: tuple[dict[str, str], Path]
) -> None:
    env, path = traced
    start_worker("unique_magic_task", env=env)
    out = run_producer("unique_magic_task", "1", "2", "3", "--count", "5", env=env)
    assert out.returncode == 0, out.stderr
    spans = read_spans(path, lambda s: len(named(s, "reply unique_magic_task")) == 5
                       and len(named(s, "run/unique_magic_task")) == 5)
    (batch,) = named(spans, "send batch unique_magic_task")
    runs = named(spans, "run/unique_magic_task")
    assert len(runs) == len(named(spans, "queue unique_magic_task")) == 5
    assert {trace_id(s) for s in spans} == {trace_id(batch)}
    assert {r["parent_id"] for r in runs} == {span_id(batch)}
    assert len({r["attributes"]["messaging.message.id"] for r in runs}) == 5
    assert batch["attributes"]["messaging.batch.message_count"] == 5
    assert all(r["attributes"]["celery_tasks.outcome"] == "success" for r in runs)


#: What the workflow scripts start with: three contracts as typed functions.
WORKFLOWS = """
from celery_tasks.canvas import chain, chord, group
from celery_tasks.remote import remote
from celery_tasks.tasks import CountPrimesTask, MagicCeleryTask, SumNumbersTask
magic, primes = remote(MagicCeleryTask.run), remote(CountPrimesTask.run)
total = remote(SumNumbersTask.run)
"""


@pytest.fixture
def magic_and_primes(start_worker: Callable[..., Worker],
                     traced: tuple[dict[str, str], Path]) -> tuple[dict[str, str], Path]:
    """Traced workers of unique_magic_task and count_primes: (the callers' settings, spans)."""
    env, path = traced
    start_worker("unique_magic_task", env=env)
    start_worker("count_primes", env=env)
    return env, path


def test_delay_and_a_chain_carry_the_trace_through_celerys_publish(
    magic_and_primes: tuple[dict[str, str], Path]
) -> None:
    env, path = magic_and_primes
    out = run_script(
        WORKFLOWS + "print(magic.send(1, 2, 3).get(),\n"
        "      chain(magic.s(4, 5, 6), primes.s()).delay().get())\n", env=env)
    assert out.returncode == 0 and out.stdout.split() == ["6", "6"], out.stderr
    spans = read_spans(path, lambda s: len(named(s, "run/count_primes")) == 1
                       and len(named(s, "run/unique_magic_task")) == 2)
    publishes = named(spans, "apply_async/unique_magic_task")  # the instrumentation's
    assert len(publishes) == 2
    for publish in publishes:
        (run,) = [r for r in named(spans, "run/unique_magic_task")
                  if r["parent_id"] == span_id(publish)]
        assert trace_id(run) == trace_id(publish)
        assert publish["attributes"]["messaging.message.id"] == (
            run["attributes"]["messaging.message.id"])
    # The chain's second step is published by the worker, inside the first step's run.
    (primes,) = named(spans, "run/count_primes")
    (second,) = named(spans, "apply_async/count_primes")
    assert primes["parent_id"] == span_id(second)
    first = next(s for s in spans if s["context"]["span_id"] == second["parent_id"])
    assert first["name"] == "run/unique_magic_task"
    assert trace_id(primes) == trace_id(first)


def test_a_group_across_contracts_is_one_trace(
    magic_and_primes: tuple[dict[str, str], Path]
) -> None:
    env, path = magic_and_primes
    out = run_script(
        WORKFLOWS + "print(group([magic.s(1, 2, 3), primes.s(10),\n"
        "                   magic.s(4, 5, 6)]).delay().get())\n", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "[6, 4, 15]", out.stderr
    spans = read_spans(path, lambda s: len(named(s, "run/unique_magic_task")) == 2
                       and len(named(s, "run/count_primes")) == 1
                       and bool(named(s, "send group of 3")))
    (root,) = named(spans, "send group of 3")
    sends = [s for s in spans if s["name"].startswith("send batch ")]
    assert len(sends) == 2 and {s["parent_id"] for s in sends} == {span_id(root)}
    runs = [*named(spans, "run/unique_magic_task"), *named(spans, "run/count_primes")]
    assert {r["parent_id"] for r in runs} == {span_id(s) for s in sends}
    assert {trace_id(s) for s in spans} == {trace_id(root)}


def test_a_chord_is_one_trace_down_to_its_body(
    start_worker: Callable[..., Worker], traced: tuple[dict[str, str], Path], services: Any
) -> None:
    env, path = traced
    env = {**env, "CELERY_RESULT_BACKEND": services.redis(14)}  # a chord's backend
    start_worker("unique_magic_task", env=env)
    start_worker("sum_numbers", env=env)
    out = run_script(
        WORKFLOWS + "print(chord([magic.s(1, 2, 3), magic.s(4, 5, 6)], total.s()).delay().get())\n",
        env=env)
    assert out.returncode == 0 and out.stdout.strip() == "21", out.stderr
    spans = read_spans(path, lambda s: bool(named(s, "run/sum_numbers"))
                       and len(named(s, "run/unique_magic_task")) == 2
                       and bool(named(s, "send chord of 2")))
    (root,) = named(spans, "send chord of 2")
    assert {trace_id(s) for s in spans} == {trace_id(root)}
    assert named(spans, "run/sum_numbers")[0]["attributes"]["celery_tasks.outcome"] == "success"


def send_task_script(name: str, args: str, headers: str = "{}") -> str:
    """A script that sends `name` to the divide queue as plain Celery's `send_task`, traced,
    and prints the error's type."""
    return f"""
import json
from celery_tasks.core import tracing
from celery_tasks.core.fingerprint import describe_contract
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from

tracing.tracer()  # Celery's publish is traced from here on
app, _ = create_worker_from(DivideTask)
result = app.send_task({name!r}, {args}, headers={headers}, queue=app.amqp.queues["divide"])
result.get(timeout=30, propagate=False)
print(type(result.result).__name__)
"""


@pytest.fixture
def metered(start_worker: Callable[..., Worker],
            traced: tuple[dict[str, str], Path]) -> tuple[dict[str, str], Path, int]:
    """A divide worker serving metrics, traced: (the callers' settings, spans, port)."""
    env, path = traced
    port = free_port()
    start_worker("divide", env={**env, "CELERY_TASKS_METRICS_PORT": str(port)})
    return env, path, port


def test_a_message_the_worker_cannot_run_is_dead_lettered_and_answered_in_the_callers_trace(
    metered: tuple[dict[str, str], Path, int]
) -> None:
    env, path, port = metered
    out = run_script(send_task_script("no_such_task", "(1,)"), env=env)
    assert out.stdout.strip() == "NotRegistered", out.stderr
    spans = read_spans(path, lambda s: bool(named(s, "dead-letter no_such_task"))
                       and bool(named(s, "reply no_such_task"))
                       and bool(named(s, "apply_async/no_such_task")))
    (publish,) = named(spans, "apply_async/no_such_task")
    (letter,) = named(spans, "dead-letter no_such_task")
    (reply,) = named(spans, "reply no_such_task")  # sent by the worker's main process
    assert letter["attributes"]["celery_tasks.reason"] == "unknown_task"
    assert letter["parent_id"] == reply["parent_id"] == span_id(publish)
    assert {trace_id(letter), trace_id(reply)} == {trace_id(publish)}
    found = metrics(port, lambda f: sample(f, "celery_tasks_dead_lettered_total") == 1)
    assert sample(found, "celery_tasks_dead_lettered_total", task="divide",
                  reason="unknown_task") == 1


#: The divide contract with a third, required argument: what a newer producer sends.
NEWER = """{"contract": json.dumps(dict(describe_contract(DivideTask), params=[
    *describe_contract(DivideTask)["params"],
    {**describe_contract(DivideTask)["params"][-1], "name": "c"}])),
 "contract_fingerprint": "feedfacefeedface", "contract_commit": "0123456789ab"}"""


def test_the_worker_counts_each_outcome_and_traces_the_dead_letters(
    metered: tuple[dict[str, str], Path, int]
) -> None:
    env, path, port = metered
    assert run_producer("divide", "6", "3", env=env).stdout.strip() == "2.0"
    failed = run_producer("divide", "1", "0", env=env)
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr
    mismatch = run_script(send_task_script("divide", "(1, 2, 3)", NEWER), env=env)
    assert mismatch.stdout.strip() == "ContractMismatch", mismatch.stderr
    # Plain Celery skips the producer's checks: the worker refuses a text for a number.
    violation = run_script(send_task_script("divide", "('one', 2)"), env=env)
    assert violation.stdout.strip() == "ContractViolation", violation.stderr

    found = metrics(port, lambda f: sample(f, "celery_tasks_task_run_seconds_count") == 4
                    and sample(f, "celery_tasks_dead_lettered_total") == 3)
    fingerprint = next(dict(labels)["fingerprint"] for name, labels in found
                       if name == "celery_tasks_worker_info")
    for outcome in ("success", "failure", "contract_mismatch", "contract_violation"):
        assert sample(found, "celery_tasks_tasks_total", task="divide", outcome=outcome,
                      fingerprint=fingerprint) == 1, outcome
    assert sample(found, "celery_tasks_contract_mismatches_total", task="divide",
                  sender_fingerprint="feedfacefeedface", sender_commit="0123456789ab") == 1
    assert sample(found, "celery_tasks_contract_violations_total", task="divide") == 1
    assert sample(found, "celery_tasks_dead_lettered_total", reason="failure") == 1
    assert sample(found, "celery_tasks_dead_lettered_total", reason="contract_mismatch") == 1
    assert sample(found, "celery_tasks_dead_lettered_total", reason="contract_violation") == 1
    assert sample(found, "celery_tasks_task_run_seconds_count", task="divide") == 4
    # Plain Celery's send_task adds no published_at, and the harness's broker stamps no
    # arrival: its queue wait is unknown.
    assert sample(found, "celery_tasks_queue_wait_seconds_count", task="divide") == 2
    assert sample(found, "celery_tasks_in_flight", task="divide") == 0
    assert sample(found, "celery_tasks_prefetched", task="divide") == 0

    spans = read_spans(path, lambda s: len(named(s, "dead-letter divide")) == 3
                       and len(named(s, "run/divide")) == 4)
    letters = {s["attributes"]["celery_tasks.outcome"]: s
               for s in named(spans, "dead-letter divide")}
    assert set(letters) == {"failure", "contract_mismatch", "contract_violation"}
    runs = {s["attributes"]["messaging.message.id"]: s for s in named(spans, "run/divide")}
    for outcome, letter in letters.items():
        assert letter["attributes"]["celery_tasks.dead_lettered"] is True
        run = runs[letter["attributes"]["messaging.message.id"]]
        assert run["attributes"]["celery_tasks.outcome"] == outcome
        assert trace_id(letter) == trace_id(run)
    mismatched = runs[letters["contract_mismatch"]["attributes"]["messaging.message.id"]]
    assert mismatched["attributes"]["celery_tasks.sender.fingerprint"] == "feedfacefeedface"


def test_a_plain_celery_callers_queue_wait_comes_from_rabbitmqs_arrival_stamp(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], tmp_path: Path
) -> None:
    """On a RabbitMQ 4.3 node configured as the compose stacks' (celery-tasks.conf stamps
    each message's arrival), a plain Celery call, which carries no published_at, has its
    queue wait measured and its `queue` span in the caller's trace."""
    with contextlib.ExitStack() as cleanup:
        try:
            nodes = cleanup.enter_context(rabbitmq_nodes(1))
        except ServiceUnavailable as exc:
            fail_or_skip(str(exc))
        path, port = tmp_path / "spans.jsonl", free_port()
        env = {**broker_env, **nodes.settings(), "CELERY_TASKS_TRACES_FILE": str(path),
               "OTEL_BSP_SCHEDULE_DELAY": "100"}
        worker = start_worker("divide", env={**env, "CELERY_TASKS_METRICS_PORT": str(port)})
        cleanup.callback(worker.stop)  # before the node goes
        out = run_script(send_task_script("divide", "(6, 3)"), env=env)
        assert out.stdout.strip() == "float", out.stderr
        found = metrics(port, lambda f: sample(f, "celery_tasks_queue_wait_seconds_count") == 1)
        assert sample(found, "celery_tasks_queue_wait_seconds_count", task="divide") == 1
        assert 0 <= sample(found, "celery_tasks_queue_wait_seconds_sum", task="divide") < 30
        spans = read_spans(path, lambda s: bool(named(s, "queue divide"))
                           and bool(named(s, "apply_async/divide")))
        (publish,) = named(spans, "apply_async/divide")
        (queued,) = named(spans, "queue divide")
        assert queued["parent_id"] == span_id(publish)
        assert trace_id(queued) == trace_id(publish)


def test_without_the_settings_nothing_is_traced_or_served(
    start_worker: Callable[..., Worker], broker_env: dict[str, str], tmp_path: Path
) -> None:
    worker = start_worker("unique_magic_task")
    out = run_script(
        "from celery_tasks.core import tracing\n"
        "from celery_tasks.remote import remote\n"
        "from celery_tasks.tasks import MagicCeleryTask\n"
        "import sys\n"
        "print(remote(MagicCeleryTask.run)(1, 2, 3), tracing.tracer(),\n"
        "      any(m.startswith('opentelemetry') for m in sys.modules))\n", env=broker_env)
    assert out.stdout.split() == ["6", "None", "False"], out.stderr
    assert "metrics" not in worker.log.lower()


class _Gateway(http.server.BaseHTTPRequestHandler):
    """A Pushgateway's one endpoint: keeps what was pushed."""

    pushed: list[tuple[str, str]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.pushed.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    _Gateway.pushed = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Gateway.pushed
    server.shutdown()


def test_the_producer_prints_or_pushes_a_batchs_metrics(
    start_worker: Callable[..., Worker], broker_env: dict[str, str],
    gateway: tuple[str, list[tuple[str, str]]],
) -> None:
    start_worker("divide")
    out = run_producer("divide", "1", "0", "--count", "4", "--metrics", "-", env=broker_env)
    assert out.returncode == 1, out.stderr  # the batch failed: its own exit code
    found = {(s.name, s.labels.get("outcome")): s.value
             for f in text_string_to_metric_families(out.stdout.split("\n", 1)[1])
             for s in f.samples}
    assert found[("celery_tasks_producer_tasks_total", "failure")] == 4
    assert ("celery_tasks_producer_batch_seconds", None) in found
    url, pushed = gateway
    out = run_producer("divide", "6", "3", "--count", "3", "--metrics", url, env=broker_env)
    assert out.returncode == 0, out.stderr
    ((where, body),) = pushed
    assert where == "/metrics/job/celery_tasks_producer/task/divide"
    assert 'celery_tasks_producer_tasks_total{fingerprint=' in body and "success" in body


@pytest.mark.parametrize(("argv", "says"), [
    (["--metrics", "ftp://x"], "must be - (print) or a Pushgateway's http(s):// URL"),
    (["--metrics", "http://[bad"], "must be - (print) or a Pushgateway's http(s):// URL"),
    (["--metrics", "http://gateway:port"], "must be - (print) or a Pushgateway's http(s)://"),
    (["--metrics", "-", "--json"], "--metrics - and --json both print to stdout"),
    (["--metrics", "-", "--no-wait"], "--metrics goes with a call or a --count batch"),
])
def test_bad_metrics_arguments_are_one_line_and_exit_2(
    broker_env: dict[str, str], argv: list[str], says: str
) -> None:
    out = run_producer("divide", "1", "2", *argv, env=broker_env)
    assert out.returncode == 2 and says in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER may name otlp, console or none"),
    ("CELERY_TASKS_METRICS_PORT", "99999", "CELERY_TASKS_METRICS_PORT"),
    ("CELERY_TASKS_TRACES_FILE", "/no/such/folder/spans", "whose folder does not exist"),
])
def test_bad_telemetry_settings_are_one_line_and_exit_7(
    broker_env: dict[str, str], variable: str, value: str, says: str
) -> None:
    out = run_producer("divide", "1", "2", env={**broker_env, variable: value})
    assert out.returncode == 7 and says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_worker_whose_metrics_port_is_taken_says_so_and_exits_7(
    broker: Any, broker_env: dict[str, str], tmp_path: Path
) -> None:
    with socket_bound() as port:
        worker = Worker("divide", {**broker_env, "CELERY_TASKS_METRICS_PORT": str(port)},
                        tmp_path).launch()
        assert worker.process is not None
        assert worker.process.wait(60) == 7
    assert f"cannot serve metrics on 127.0.0.1:{port}" in worker.log
    assert "Traceback" not in worker.log


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A port held by a listening socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])
