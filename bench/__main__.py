"""`make bench`: this project beside raw py-amqp, bare Celery and Dramatiq, in one run.

Everything runs here, against the RabbitMQ (vhost `bench`) and Redis of harness.services
(the HARNESS_* variables, else 127.0.0.1, else containers), with bounded sizes. Prints one
table, writes it as JSON under bench/results/ and draws a PNG.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.services import DEFAULTS, RabbitMQ, Services, ServiceUnavailable, running

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")
#: Where the latest run's table is shown; a run into another BENCH_RESULTS leaves it alone.
DOCS = ROOT / "docs" / "performance.md"
DOCS_START, DOCS_END = "<!-- bench:latest -->", "<!-- /bench:latest -->"
N = int(os.environ.get("BENCH_N", "2000"))
GROUP_N = 2000  # members of the one group timed, here and in bare Celery (same settings)
RTT_SAMPLES = int(os.environ.get("BENCH_RTT", "300"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))  # end-to-end runs per system; the median counts
MEMORY_NS = [int(x) for x in os.environ.get("BENCH_MEMORY_NS", "100,1000,10000,100000").split(",")]
VHOST = "bench"
CLASSIC_VHOST = "bench_classic"  # the same, with classic queues (a queue's type is fixed)
PAYLOAD = [[1, 2, 3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def node() -> RabbitMQ:
    """The RabbitMQ node of this run: main() resolved it and named it to every process."""
    return RabbitMQ.from_url(os.environ.get("HARNESS_RABBITMQ_URL", DEFAULTS[
        "HARNESS_RABBITMQ_URL"]), os.environ.get("HARNESS_RABBITMQCTL", "rabbitmqctl"))


def connect(vhost: str = VHOST) -> Any:
    """A raw py-amqp connection to the run's node."""
    import amqp

    rabbit = node()
    return amqp.Connection(rabbit.address, userid=rabbit.user, password=rabbit.password,
                           virtual_host=vhost)


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}}
    redis = os.environ.get("HARNESS_REDIS_URL", DEFAULTS["HARNESS_REDIS_URL"])
    return {**base, "BENCH_BROKER_URL": node().url(VHOST),
            "BENCH_REDIS_URL": f"{redis.rstrip('/')}/14", **node().settings(VHOST),
            "CELERY_TASKS_ENV_FILE": "", **extra}


@contextmanager
def worker(argv: list[str], cwd: Path, ready: str, **extra: str) -> Iterator[None]:
    """A worker process, logging to a temporary file, stopped at the end."""
    log = RESULTS / f".worker-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=cwd, env=env(**extra), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.unlink(missing_ok=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


def timed_rtt(call: Callable[[], Any], samples_wanted: int = RTT_SAMPLES) -> dict[str, float]:
    for _ in range(20):  # warm up
        call()
    samples = []
    for _ in range(samples_wanted):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def raw_amqp() -> dict[str, Any]:
    """py-amqp alone: the limit for a Python client on this machine."""
    import amqp

    body = json.dumps(PAYLOAD).encode()
    with connect() as conn:
        ch = conn.channel()
        ch.queue_declare("bench_raw", durable=True, auto_delete=False)
        ch.queue_purge("bench_raw")

        def make(_: int) -> Any:
            return amqp.Message(body, delivery_mode=2, content_type="application/json")

        plain = publish_rate(conn, ch, "bench_raw", make, confirmed=False)
        confirmed = publish_rate(conn, conn.channel(), "bench_raw", make, confirmed=True)
        same = same_message_rate(conn)
        got = [0]

        def on_message(message: Any) -> None:
            got[0] += 1
            message.channel.basic_ack(message.delivery_tag)

        for i in range(N):  # what consume+ack takes
            ch.basic_publish(make(i), exchange="", routing_key="bench_raw")
        ch.basic_qos(0, 100, False)
        tag = ch.basic_consume("bench_raw", callback=on_message)
        t = time.perf_counter()
        while got[0] < N:
            conn.drain_events(timeout=10)
        consumed = N / (time.perf_counter() - t)
        ch.basic_cancel(tag)
        ch.queue_delete("bench_raw")
    return {"name": "raw py-amqp", "publish_per_s": plain, "publish_confirmed_per_s": confirmed,
            "publish_same_message_per_s": same, "consume_ack_per_s": consumed}


def same_message_rate(conn: Any) -> float:
    """py-amqp publishing this project's own task messages (Celery's headers and the
    contract's, built beforehand) to a quorum queue, with batched confirms: what the broker
    takes of these messages, with no work on the client's side."""
    from celery_tasks.publisher.stream import message_factory
    from celery_tasks.tasks import MagicCeleryTask
    from celery_tasks.utils import create_worker_from

    _, task = create_worker_from(MagicCeleryTask)
    factory = message_factory(task, None)
    messages = [factory.message(f"00000000-0000-4000-8000-{i:012d}", [1, 2, i], {})
                for i in range(N)]
    channel = conn.channel()
    channel.queue_declare("bench_raw_same", durable=True, auto_delete=False,
                          arguments={"x-queue-type": "quorum"})
    rate = publish_rate(conn, channel, "bench_raw_same", messages.__getitem__, confirmed=True)
    channel.queue_delete("bench_raw_same")
    return rate


def publish_rate(conn: Any, channel: Any, queue: str, make: Callable[[int], Any],
                 confirmed: bool) -> float:
    """py-amqp publishing N messages `make(i)` into `queue`, empty at each run (and awaiting
    batched confirms if `confirmed`): the median rate of RUNS runs."""
    acked, sent = [0], [0]
    if confirmed:
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__(0, tag))

    def run() -> float:
        started = time.perf_counter()
        for i in range(N):
            channel.basic_publish(make(i), exchange="", routing_key=queue)
        if confirmed:
            sent[0] += N
            while acked[0] < sent[0]:
                conn.drain_events(timeout=10)
        seconds = time.perf_counter() - started
        channel.queue_purge(queue)
        return seconds

    return median_rate(run)


def rtt_floor(queue_type: str, reliable: bool = False) -> dict[str, Any]:
    """Round trips through a raw py-amqp echo worker: the floor for a queue type here.

    `reliable`: what at-least-once costs at the floor. The client awaits the confirm of
    its persistent message and acknowledges the reply from a durable reply queue; the
    worker's reply is persistent and confirmed before it acknowledges (bench/echo.py).
    """
    import amqp

    name = f"bench_echo_{queue_type}"
    with connect() as conn:
        ch = conn.channel()
        ch.queue_declare(name, durable=True, auto_delete=False,
                         arguments={"x-queue-type": queue_type})
        ch.queue_purge(name)
        if reliable:
            reply = f"bench_echo_reply_{os.getpid()}"
            ch.queue_declare(reply, durable=True, auto_delete=False,
                             arguments={"x-expires": 600_000})
            ch.confirm_select()
        else:
            reply, _, _ = ch.queue_declare("", exclusive=True)
        confirmed, sent = [0], [0]
        ch.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, tag))
        got: list[Any] = []
        replies = conn.channel()
        replies.basic_consume(reply, callback=got.append, no_ack=not reliable)

        def call() -> None:
            ch.basic_publish(amqp.Message(json.dumps([1, 2, 3]), delivery_mode=2,
                                          reply_to=reply), exchange="", routing_key=name)
            sent[0] += 1
            while not got or (reliable and confirmed[0] < sent[0]):
                conn.drain_events(timeout=10)
            message = got.pop()
            if reliable:
                replies.basic_ack(message.delivery_tag)

        argv = [sys.executable, "-m", "bench.echo", name] + (["reliable"] if reliable else [])
        with worker(argv, ROOT, "echo ready"):
            label = "at-least-once echo worker" if reliable else "echo worker"
            row = {"name": f"raw py-amqp {label}, {queue_type} queue", **timed_rtt(call)}
        replies.close()
        ch.queue_delete(name)
        if reliable:
            ch.queue_delete(reply)
    return row


def purge(queue: str) -> None:
    """Empty a queue after a publish-only measurement."""

    with connect() as conn:
        conn.channel().queue_purge(queue)


def median_rate(run: Callable[[], float], count: int = N) -> float:
    """Tasks/s: the median of RUNS runs of `count` tasks (`run` returns its seconds)."""
    return statistics.median(count / run() for _ in range(RUNS))


def stopwatch(run: Callable[[], Any]) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def timed_group(run: Callable[[], list[Any]]) -> float:
    """Seconds for `run` to send a group of GROUP_N `add(1, 2, i)` and take every result
    back; the results are checked after the clock stops."""
    started = time.perf_counter()
    results = run()
    seconds = time.perf_counter() - started
    assert results == [3 + i for i in range(GROUP_N)], results[:5]
    return seconds


def bare_celery(settings: str) -> dict[str, Any]:
    os.environ.update(env(BENCH_SETTINGS=settings))  # this process measures only this
    import celery
    from celery.result import ResultSet

    from bench import bare_celery as bare

    def publish() -> list[Any]:
        return [bare.add.delay(1, 2, i) for i in range(N)]

    bare.add.delay(1, 2, 3)  # declares the queue and connects
    published = stopwatch(publish)  # no worker yet: publishing alone
    purge(bare.app.conf.task_default_queue)
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-P", "threads",
            "-c", "4", "--without-gossip", "--without-mingle", "--loglevel", "info"]
    row: dict[str, Any] = {"name": f"bare Celery ({settings} settings)",
                           "publish_per_s": N / published}
    with worker(argv, ROOT, " ready.", BENCH_SETTINGS=settings):
        row |= timed_rtt(lambda: bare.add.delay(1, 2, 3).get(timeout=30))
        row["e2e_per_s"] = median_rate(lambda: stopwatch(
            lambda: ResultSet(publish()).join_native(timeout=300)))
        if settings == "reliable":  # Celery's own group, beside this project's
            row["group_per_s"] = median_rate(lambda: timed_group(lambda: celery.group(
                bare.add.s(1, 2, i) for i in range(GROUP_N)).apply_async().get(timeout=300)),
                GROUP_N)
    bare.app.close()
    return row


def dramatiq_peer() -> dict[str, Any]:
    os.environ.update(env())
    from bench import dramatiq_app

    def run() -> None:
        for message in [dramatiq_app.add.send(1, 2, i) for i in range(N)]:
            message.get_result(block=True, timeout=300_000)

    dramatiq_app.add.send(1, 2, 3)
    published = stopwatch(lambda: [dramatiq_app.add.send(1, 2, i) for i in range(N)])
    purge("bench_dramatiq")
    argv = [sys.executable, "-m", "dramatiq", "bench.dramatiq_app", "--processes", "1",
            "--threads", "4", "--queues", "bench_dramatiq"]
    with worker(argv, ROOT, "is ready for action"):
        rtt = timed_rtt(lambda: dramatiq_app.add.send(1, 2, 3).get_result(block=True,
                                                                            timeout=30_000))
        e2e = median_rate(lambda: stopwatch(run))
    return {"name": "Dramatiq (RabbitMQ, Redis results)", "publish_per_s": N / published,
            "e2e_per_s": e2e, **rtt}


def ours(workers: int = 1, full: bool = True) -> dict[str, Any]:
    """This project's own clients: the batch path's publish rate and end to end, the
    single call and a group of GROUP_N. Celery's `delay()` through the contracts is
    measured apart (ours_delay): in this process, after it, the batch path's end to end ran
    slower in most trials."""
    os.environ.update(env())
    from celery_tasks import group
    from celery_tasks.core.discovery import require_worker
    from celery_tasks.core.fingerprint import describe_contract
    from celery_tasks.publisher.stream import send_stream
    from celery_tasks.remote import remote
    from celery_tasks.tasks import MagicCeleryTask
    from celery_tasks.utils import create_worker_from

    _, task = create_worker_from(MagicCeleryTask)
    magic = remote(MagicCeleryTask.run)
    row: dict[str, Any] = {"name": "this project", "workers": workers}
    calls: list[tuple[tuple[int, ...], dict[str, Any]]] = [((1, 2, i), {}) for i in range(N)]
    if full:  # no worker yet: the batch path publishing alone (checks included)

        def publish() -> float:
            sent = send_stream(task, calls, 300, lambda *_: None, wait=False, buffered=True)
            assert sent.exhausted and not sent.unconfirmed_ids
            purge(task.name)
            return sent.published_in - sent.connecting  # as raw py-amqp's, once connected

        row["publish_per_s"] = median_rate(publish)

    argv = [sys.executable, "-m", "consumer", "unique_magic_task"]
    with contextlib.ExitStack() as stack:
        for _ in range(workers):
            stack.enter_context(worker(argv, ROOT / "consumer", " ready."))
        if full:
            row |= timed_rtt(lambda: magic(1, 2, 3))  # the single-call path
        row["e2e_per_s"] = median_rate(lambda: batch(task, calls))
        if full:  # after the end to end, which it leaves as it was measured before
            row["group_per_s"] = median_rate(lambda: timed_group(lambda: group(
                magic.s(1, 2, i) for i in range(GROUP_N)).delay().get(timeout=300)), GROUP_N)
            # What --require-worker adds to a call: the question to the task's workers.
            mine = describe_contract(MagicCeleryTask)
            asked = timed_rtt(lambda: require_worker(task.app, mine), 100)
            row["require_worker_p50_ms"] = asked["p50_ms"]
    return row


def batch(task: Any, calls: list[tuple[tuple[int, ...], dict[str, Any]]]) -> float:
    """Seconds for the batch path to send `calls` and take every (checked) result back."""
    from celery_tasks.publisher.stream import send_batch

    done = send_batch(task, calls, 300)
    assert [o[1] if o else None for o in done.outcomes] == [3 + i for i in range(N)]
    return done.elapsed


def ours_on(name: str, broker: str) -> dict[str, Any]:
    """This project's end to end (batch path, one worker) and single call on the RabbitMQ
    nodes `broker` names (celery_tasks settings, as JSON): what replication costs."""
    nodes = json.loads(broker)
    return single_and_batch(name, nodes)


def single_and_batch(name: str, settings: dict[str, str]) -> dict[str, Any]:
    """The single call's round trip and the batch path's end to end (one worker), this
    process and the worker both run with `settings` (celery_tasks variables)."""
    os.environ.update(env(**settings))
    from celery_tasks.remote import remote
    from celery_tasks.tasks import MagicCeleryTask
    from celery_tasks.utils import create_worker_from

    _, task = create_worker_from(MagicCeleryTask)
    magic = remote(MagicCeleryTask.run)
    calls: list[tuple[tuple[int, ...], dict[str, Any]]] = [((1, 2, i), {}) for i in range(N)]
    argv = [sys.executable, "-m", "consumer", "unique_magic_task"]
    with worker(argv, ROOT / "consumer", " ready.", **settings):
        row = {"name": name, **timed_rtt(lambda: magic(1, 2, 3))}
        row["e2e_per_s"] = median_rate(lambda: batch(task, calls))
    return row


#: Monitoring settings the `monitoring` rows run with: none (off, twice: the run's noise),
#: the worker's metrics, and traces on both sides (written to a file) with the metrics.
MONITORING = (("monitoring off", False, False), ("metrics on (worker)", True, False),
              ("monitoring off, again", False, False),
              ("traces (both sides) + metrics on", True, True))


def ours_monitored(name: str, metrics: bool, traces: bool) -> dict[str, Any]:
    """The single call and the batch path's end to end with monitoring off or on; off, also
    what a call pays for it in this process (one look at a module global)."""
    import tempfile
    import timeit

    from harness.compose import free_port

    spans = Path(tempfile.mkdtemp()) / "spans.jsonl"
    extra = {"CELERY_TASKS_METRICS_PORT": str(free_port())} if metrics else {}
    if traces:
        extra["CELERY_TASKS_TRACES_FILE"] = str(spans)
    row = single_and_batch(name, extra)
    from celery_tasks.core import tracing

    if not (metrics or traces):
        row["off_ns_per_call"] = timeit.timeit(tracing.tracer, number=100_000) / 100_000 * 1e9
    if traces:
        row["spans_written"] = sum(1 for _ in spans.open())
    return row


def monitoring() -> list[dict[str, Any]]:
    """`MONITORING`, each in a process of its own, with ratios to the first (off)."""
    rows = [isolated("ours_monitored", *spec) for spec in MONITORING]
    for row in rows[1:]:
        row["ratio_e2e_vs_off"] = row["e2e_per_s"] / rows[0]["e2e_per_s"]
        row["ratio_p50_vs_off"] = row["p50_ms"] / rows[0]["p50_ms"]
    return rows


def replication() -> list[dict[str, Any]]:
    """The same measurement on one RabbitMQ 4.3 node and on a three-node cluster (quorum
    queues with a member on each node), both in containers of the Docker engine."""
    from harness.cluster import rabbitmq_nodes

    rows = []
    for size, name in ((1, "this project, RabbitMQ 4.3, one node (container)"),
                       (3, "this project, RabbitMQ 4.3, three-node cluster")):
        with rabbitmq_nodes(size) as nodes:
            rows.append(isolated("ours_on", name, json.dumps(nodes.settings())))
    one, three = rows
    three["ratio_e2e_vs_one_node"] = three["e2e_per_s"] / one["e2e_per_s"]
    three["ratio_p50_vs_one_node"] = three["p50_ms"] / one["p50_ms"]
    return rows


def ours_delay() -> dict[str, Any]:
    """Celery's own client through a contract, on this project's worker: one
    `delay().get()` at a time, and N `delay()` pipelined."""
    os.environ.update(env())
    from celery.result import ResultSet

    from celery_tasks.tasks import MagicCeleryTask
    from celery_tasks.utils import create_worker_from

    _, task = create_worker_from(MagicCeleryTask)
    argv = [sys.executable, "-m", "consumer", "unique_magic_task"]
    with worker(argv, ROOT / "consumer", " ready."):
        delay = timed_rtt(lambda: task.delay(1, 2, 3).get(timeout=30))
        pipelined = median_rate(lambda: stopwatch(lambda: ResultSet(
            [task.delay(1, 2, i) for i in range(N)]).join_native(timeout=300)))
    return {"delay_p50_ms": delay["p50_ms"], "delay_p99_ms": delay["p99_ms"],
            "pipelined_e2e_per_s": pipelined}


def ours_classic() -> dict[str, Any]:
    """The same single call on classic queues (CELERY_TASKS_QUEUE_TYPE=classic)."""
    classic = {"RABBITMQ_VHOST": CLASSIC_VHOST, "CELERY_TASKS_QUEUE_TYPE": "classic"}
    os.environ.update(env(**classic))  # this process measures only this
    from celery_tasks.remote import remote
    from celery_tasks.tasks import MagicCeleryTask

    magic = remote(MagicCeleryTask.run)
    argv = [sys.executable, "-m", "consumer", "unique_magic_task"]
    with worker(argv, ROOT / "consumer", " ready.", **classic):
        return {"name": "this project, classic queues", **timed_rtt(lambda: magic(1, 2, 3))}


def memory_curve() -> list[dict[str, Any]]:
    rows = []
    argv = [sys.executable, "-m", "consumer", "unique_magic_task"]
    with worker(argv, ROOT / "consumer", " ready."), worker(argv, ROOT / "consumer", " ready."):
        for n in MEMORY_NS:
            out = subprocess.run([sys.executable, "-m", "bench.memory", str(n)], cwd=ROOT,
                                 env=env(), capture_output=True, text=True, timeout=900)
            rows.append(json.loads(out.stdout) if out.returncode == 0 else
                        {"n": n, "error": out.stderr.strip().splitlines()[-1:]})
    return rows


def prepare(services: Services) -> None:
    """The run's services, named to every measurement process; the bench's vhosts."""
    os.environ |= {"HARNESS_RABBITMQ_URL": services.rabbitmq.url(),
                   "HARNESS_RABBITMQCTL": shlex.join(services.rabbitmq.ctl),
                   "HARNESS_REDIS_URL": services.redis_url}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for vhost in (VHOST, CLASSIC_VHOST):
        for args in (["add_vhost", vhost],
                     ["set_permissions", "-p", vhost, services.rabbitmq.user, ".*", ".*", ".*"]):
            services.rabbitmq.rabbitmqctl(*args, check=False)


def main() -> int:
    with running() as services:
        prepare(services)
        return measure()


def measure() -> int:
    started = time.time()
    rows = [isolated("raw_amqp"), isolated("rtt_floor", "classic"),
            isolated("rtt_floor", "quorum"), isolated("rtt_floor", "classic", True),
            isolated("rtt_floor", "quorum", True), isolated("bare_celery", "article"),
            isolated("bare_celery", "reliable"), isolated("dramatiq_peer"),
            isolated("ours_classic"), isolated("ours", 1)]
    rows[-1] |= isolated("ours_delay")
    scale = [isolated("ours", k, False) for k in (1, 2, 4)]
    memory = memory_curve()
    monitored = monitoring()
    replicated = replication()
    bare = next(r for r in rows if r["name"].startswith("bare Celery (reliable"))
    for row in rows:
        if "e2e_per_s" in row:
            row["ratio_e2e_vs_bare_reliable"] = row["e2e_per_s"] / bare["e2e_per_s"]
    raw, mine = rows[0], rows[-1]
    mine["ratio_publish_vs_raw"] = mine["publish_per_s"] / raw["publish_per_s"]
    mine["ratio_publish_vs_raw_confirmed"] = (mine["publish_per_s"]
                                              / raw["publish_confirmed_per_s"])
    mine["ratio_publish_vs_raw_same_message"] = (mine["publish_per_s"]
                                                 / raw["publish_same_message_per_s"])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine(), "n": N, "runs": RUNS, "rtt_samples": RTT_SAMPLES,
              "rows": rows, "targets": targets(rows),
              "scale": [{"workers": r["workers"], "e2e_per_s": r["e2e_per_s"]} for r in scale],
              "memory": memory, "replication": replicated, "monitoring": monitored,
              "group": {"n": GROUP_N, "bare_celery_per_s": bare["group_per_s"],
                        "ours_per_s": mine["group_per_s"],
                        "ratio": mine["group_per_s"] / bare["group_per_s"]},
              "seconds": time.time() - started}
    for path in (RESULTS / f"bench-{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(report, indent=2))
    print(table(report))
    plot(report, RESULTS / "latest.png")
    if "BENCH_RESULTS" not in os.environ:
        write_docs(report)
    return 0


#: Issue 7's targets: end to end against bare Celery with the same settings and against
#: Dramatiq, the batch path's publish rate against raw py-amqp, the single call's p50.
E2E_VS_BARE, E2E_VS_DRAMATIQ, PUBLISH_VS_RAW, SINGLE_CALL_P50_MS = 2.0, 1.0, 0.5, 1.0


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with what this run measured and whether it is met. The single call's
    target also names its floor: the round trip of a raw py-amqp worker doing what
    at-least-once needs on a quorum queue, which no framework's worker can beat."""
    by_name = {row["name"]: row for row in rows}
    mine, raw = by_name["this project"], by_name["raw py-amqp"]
    bare = by_name["bare Celery (reliable settings)"]
    dramatiq = by_name["Dramatiq (RabbitMQ, Redis results)"]
    floor = by_name["raw py-amqp at-least-once echo worker, quorum queue"]["p50_ms"]
    p50 = mine["p50_ms"]
    found = [
        ("end to end vs bare Celery, same settings", mine["e2e_per_s"] / bare["e2e_per_s"],
         E2E_VS_BARE, "x"),
        ("end to end vs Dramatiq", mine["e2e_per_s"] / dramatiq["e2e_per_s"],
         E2E_VS_DRAMATIQ, "x"),
        ("batch publish vs raw py-amqp", mine["publish_per_s"] / raw["publish_per_s"],
         PUBLISH_VS_RAW, "%"),
    ]
    verdicts = [{"target": name, "at_least": goal, "measured": value, "unit": unit,
                 "met": value >= goal} for name, value, goal, unit in found]
    verdicts.append({"target": "single call p50", "at_most": SINGLE_CALL_P50_MS,
                     "measured": p50, "unit": "ms", "met": p50 <= SINGLE_CALL_P50_MS,
                     "floor_ms": floor, "reachable": floor <= SINGLE_CALL_P50_MS})
    return verdicts


#: How each unit is printed, and with one more digit where that one would hide a miss.
FORMATS = {"x": ("{:.2f}x", "{:.3f}x"), "%": ("{:.0%}", "{:.1%}"), "ms": ("{:.2f} ms", "{:.3f} ms")}


def shown(value: float, goal: float, unit: str) -> str:
    """`value` as the table prints it; a value that is not `goal` never prints as it."""
    short, longer = FORMATS[unit]
    text = short.format(value)
    return longer.format(value) if value != goal and text == short.format(goal) else text


def verdict_line(target: dict[str, Any]) -> str:
    """One target as the table prints it."""
    unit, verdict = target["unit"], "met" if target["met"] else "not met"
    goal = float(target["at_least"] if "at_least" in target else target["at_most"])
    measured = shown(target["measured"], goal, unit)
    if "at_least" in target:
        return f"{target['target']}: {measured}, target >= {shown(goal, goal, unit)}: {verdict}"
    line = f"{target['target']}: {measured}, target <= {goal:g} ms: {verdict}"
    if not (target["met"] or target["reachable"]):
        line += (" (not reachable here: the at-least-once floor of a quorum queue is "
                 f"{shown(target['floor_ms'], goal, unit)})")
    return line


def group_line(group: dict[str, Any]) -> str:
    """The group of GROUP_N, this project's beside bare Celery's, as table and docs say it
    (reports written before it was measured have none)."""
    return (f"Group of {group['n']:,} (publish + every result): {group['ours_per_s']:,.0f} "
            f"tasks/s, bare Celery (same settings) {group['bare_celery_per_s']:,.0f} tasks/s: "
            f"{group['ratio']:.2f}x")


def machine() -> dict[str, Any]:
    rabbit = node().version()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "rabbitmq": rabbit,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}


def table(report: dict[str, Any]) -> str:
    def f(row: dict[str, Any], key: str, fmt: str = "{:,.0f}") -> str:
        return fmt.format(row[key]) if key in row else "-"

    lines = [f"{'':54} {'publish/s':>10} {'e2e/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>8}"]
    for row in report["rows"]:
        lines.append(f"{row['name']:54} {f(row, 'publish_per_s'):>10} {f(row, 'e2e_per_s'):>8} "
                     f"{f(row, 'p50_ms', '{:.2f}'):>7} {f(row, 'p99_ms', '{:.2f}'):>7} "
                     f"{f(row, 'ratio_e2e_vs_bare_reliable', '{:.2f}x'):>8}")
    raw = report["rows"][0]
    lines.append(f"raw py-amqp: {raw['publish_confirmed_per_s']:,.0f}/s with batched confirms, "
                 f"{raw['publish_same_message_per_s']:,.0f}/s of this project's messages (quorum "
                 f"queue, confirmed), {raw['consume_ack_per_s']:,.0f}/s consume+ack")
    ours_row = report["rows"][-1]
    lines.append(f"this project, delay() pipelined: {ours_row['pipelined_e2e_per_s']:,.0f} e2e/s")
    lines.append(f"this project, one task.delay().get() (Celery's client): p50 "
                 f"{ours_row['delay_p50_ms']:.2f} ms, p99 {ours_row['delay_p99_ms']:.2f} ms")
    if "group" in report:
        lines.append(group_line(report["group"]))
    if "require_worker_p50_ms" in ours_row:
        lines.append(f"--require-worker's question to the workers: p50 "
                     f"{ours_row['require_worker_p50_ms']:.2f} ms")
    lines.append(f"this project's batch publish: {ours_row['ratio_publish_vs_raw']:.0%} of raw "
                 f"py-amqp, {ours_row['ratio_publish_vs_raw_confirmed']:.0%} of raw with "
                 f"batched confirms, {ours_row['ratio_publish_vs_raw_same_message']:.0%} of raw "
                 "with its own messages")
    lines.append("scale (worker processes -> e2e/s): " + ", ".join(
        f"{s['workers']} -> {s['e2e_per_s']:,.0f}" for s in report["scale"]))
    lines.append("producer memory (N -> peak RSS MiB): " + ", ".join(
        f"{m['n']:,} -> {m.get('peak_rss_mib', float('nan')):.0f}" for m in report["memory"]))
    one, three = report["replication"]
    lines.append(f"replication (RabbitMQ 4.3 in containers): e2e {one['e2e_per_s']:,.0f}/s on "
                 f"one node, {three['e2e_per_s']:,.0f}/s on three "
                 f"({three['ratio_e2e_vs_one_node']:.2f}x); single call p50 "
                 f"{one['p50_ms']:.2f} ms on one, {three['p50_ms']:.2f} ms on three "
                 f"({three['ratio_p50_vs_one_node']:.2f}x)")
    lines.extend(f"monitoring: {line}" for line in monitoring_lines(report))
    lines.extend(f"target, {verdict_line(t)}" for t in report["targets"])
    return "\n".join(lines)


def monitoring_lines(report: dict[str, Any]) -> list[str]:
    """The monitoring rows against monitoring off, as table and docs say them (reports
    written before they were measured have none)."""
    rows = report.get("monitoring", [])
    if not rows:
        return []
    off = rows[0]
    lines = [f"off: e2e {off['e2e_per_s']:,.0f}/s, single call p50 {off['p50_ms']:.2f} ms; "
             f"what a call pays for it off: {off['off_ns_per_call']:.0f} ns"]
    lines += [f"{row['name']}: e2e {row['e2e_per_s']:,.0f}/s ({row['ratio_e2e_vs_off']:.2f}x "
              f"off), p50 {row['p50_ms']:.2f} ms ({row['ratio_p50_vs_off']:.2f}x off)"
              for row in rows[1:]]
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The latest run as docs/performance.md shows it: one table and the targets."""
    def f(row: dict[str, Any], key: str, fmt: str = "{:,.0f}") -> str:
        return fmt.format(row[key]) if key in row else "—"

    machine_ = report["machine"]
    when = f"Run of {report['when']}" if "when" in report else "An undated run"
    lines = [f"{when}: {machine_['cpus']} cores, "
             f"{machine_['memory_gib']} GiB, RabbitMQ {machine_['rabbitmq']}, Python "
             f"{machine_['python']}; N = {report['n']:,}, median of {report['runs']} runs, "
             f"{report['rtt_samples']} round trips.", "",
             "| | publish/s | e2e/s | round trip p50 | p99 | e2e vs bare Celery (same settings) |",
             "|---|---:|---:|---:|---:|---:|"]
    replicated = report.get("replication", [])
    for row in [*report["rows"], *replicated]:
        lines.append(f"| {row['name']} | {f(row, 'publish_per_s')} | {f(row, 'e2e_per_s')} | "
                     f"{f(row, 'p50_ms', '{:.2f} ms')} | {f(row, 'p99_ms', '{:.2f} ms')} | "
                     f"{f(row, 'ratio_e2e_vs_bare_reliable', '{:.2f}x')} |")
    ours_row = report["rows"][-1]
    lines += ["",
              f"- Batch publish: {ours_row['ratio_publish_vs_raw']:.0%} of raw py-amqp, "
              f"{ours_row['ratio_publish_vs_raw_confirmed']:.0%} of raw with batched confirms, "
              f"{ours_row['ratio_publish_vs_raw_same_message']:.0%} of raw publishing this "
              "project's own messages.",
              f"- Celery's `delay().get()` through a contract: p50 {ours_row['delay_p50_ms']:.2f} "
              f"ms; `delay()` pipelined: {ours_row['pipelined_e2e_per_s']:,.0f} e2e/s.",
              *([f"- {group_line(report['group'])}."] if "group" in report else []),
              *([f"- `--require-worker` asks the task's workers before a call: p50 "
                 f"{ours_row['require_worker_p50_ms']:.2f} ms (nothing on the normal path)."]
                if "require_worker_p50_ms" in ours_row else []),
              "- Worker processes -> e2e/s: " + ", ".join(
                  f"{s['workers']} -> {s['e2e_per_s']:,.0f}" for s in report["scale"]) + ".",
              "- `--count N` -> producer peak RSS: " + ", ".join(
                  f"{m['n']:,} -> {m.get('peak_rss_mib', float('nan')):.0f} MiB"
                  for m in report["memory"]) + "."]
    lines += [f"- Monitoring, {line}." for line in monitoring_lines(report)]
    if replicated:
        three = replicated[-1]
        lines.append(f"- Three-node cluster vs one node: {three['ratio_e2e_vs_one_node']:.2f}x "
                     f"end to end, {three['ratio_p50_vs_one_node']:.2f}x single-call p50.")
    lines += ["", "Targets:", ""] + [f"- {verdict_line(t)}" for t in report["targets"]]
    return "\n".join(lines)


def docs_block(report: dict[str, Any]) -> str:
    return f"{DOCS_START}\n{markdown(report)}\n{DOCS_END}"


def write_docs(report: dict[str, Any]) -> None:
    """Put the run's table into docs/performance.md, between its markers."""
    text = DOCS.read_text()
    start, end = text.index(DOCS_START), text.index(DOCS_END) + len(DOCS_END)
    DOCS.write_text(text[:start] + docs_block(report) + text[end:])


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = [r for r in report["rows"] if "e2e_per_s" in r]
    left.barh([r["name"] for r in rows], [r["e2e_per_s"] for r in rows], color="#4a7ab5")
    left.set_xlabel("end-to-end tasks/s (publish to every result back)")
    left.set_title(f"N = {report['n']}, {report['machine']['cpus']} cores")
    mem = [m for m in report["memory"] if "peak_rss_mib" in m]
    right.plot([m["n"] for m in mem], [m["peak_rss_mib"] for m in mem], marker="o")
    right.set_xscale("log")
    right.set_ylim(0, 1.25 * max([m["peak_rss_mib"] for m in mem], default=1))
    right.set_xlabel("tasks in one batch")
    right.set_ylabel("producer peak RSS (MiB)")
    right.set_title("producer memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def isolated(measure: str, *args: Any) -> dict[str, Any]:
    """Run one measurement in a process of its own: no peer's library, connection or thread
    left over from an earlier measurement competes with it."""
    out = subprocess.run([sys.executable, "-m", "bench", "--one", json.dumps([measure, *args])],
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{measure}{args} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def one(spec: str) -> int:
    measure, *args = json.loads(spec)
    print(json.dumps(globals()[measure](*args)))
    return 0


def cli(argv: list[str]) -> int:
    """`python -m bench [--one JSON]`: the whole benchmark, or one of its measurements."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="This project beside raw py-amqp, bare Celery and Dramatiq, in one run "
        "(a few minutes): prints the table, writes bench/results/latest.json and .png.",
        epilog="examples:\n  make bench                      # installs the peers, then runs "
        "this\n  BENCH_N=500 python -m bench     # fewer tasks per measurement\n\n"
        "environment: BENCH_N (2000), BENCH_RTT (300), BENCH_RUNS (3), BENCH_MEMORY_NS, "
        "BENCH_RESULTS, and the HARNESS_* services (docs/reference.md)")
    parser.add_argument("--one", metavar="JSON",
                        help='one measurement, in this process: ["name", arg, ...]')
    parser.add_argument("--docs", action="store_true",
                        help="only rewrite docs/performance.md's table from latest.json")
    args = parser.parse_args(argv)
    if args.docs:
        write_docs(json.loads((RESULTS / "latest.json").read_text()))
        return 0
    try:
        return one(args.one) if args.one else main()
    except ServiceUnavailable as exc:  # no engine for the containers: say so in one line
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
