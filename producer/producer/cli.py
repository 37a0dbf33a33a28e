"""`python -m producer TASK_NAME ARG...`: send tasks through their contracts, print results."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError

from celery_tasks.core import tracing
from celery_tasks.core.broker import check_result_backend, load_result_backend, wait_for_broker
from celery_tasks.core.cli import OneLineParser, exit_codes_epilog, positive_int, run_cli
from celery_tasks.core.contract import Contract, check_call, describe, payload_limit
from celery_tasks.core.discovery import require_worker
from celery_tasks.core.errors import (
    EXIT_BAD_ARGUMENTS,
    EXIT_BROKER_UNREACHABLE,
    EXIT_CONFIG,
    EXIT_CONTRACT_MISMATCH,
    EXIT_CONTRACT_VIOLATION,
    EXIT_NO_WORKER,
    EXIT_OK,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_TOPOLOGY,
    EXIT_UNKNOWN_TASK,
    EXIT_USAGE,
    REMOTE_ERRORS,
    ConfigError,
    ContractMismatch,
    ContractViolation,
    TaskFailed,
    TaskTimeout,
    UnknownTask,
)
from celery_tasks.core.fingerprint import describe_contract
from celery_tasks.core.results import wait_for
from celery_tasks.core.settings import Settings
from celery_tasks.core.topology import declare_topology
from celery_tasks.tasks import CONTRACTS

from .client import CountReport, Outcome, publish_count, send, send_count
from .progress import ProgressBar

DEFAULT_TIMEOUT = 60.0
EXAMPLES = """examples:
  python -m producer unique_magic_task 1 2 3          # prints 6
  python -m producer count_primes 100000 --count 200  # a batch, with a summary
  python -m producer divide 1 0 --json                # the error, as JSON
  python -m producer sleep_echo 0.5 hello --timeout 2
  python -m producer unique_magic_task 1 2 3 --no-wait    # prints the task id
  python -m producer unique_magic_task --result ID        # its result, later (durable backend)
  python -m producer unique_magic_task 1 2 3 --then count_primes --then divide 2
                      # a chain: each result is the first argument of the next step (1.5)
  python -m producer unique_magic_task 1 2 3 --require-worker  # only if a worker can run it
  python -m producer count_primes 1000 --count 500 --metrics -  # and its Prometheus metrics
  python -m producer --list
"""


@dataclass(frozen=True)
class ProducerArgs:
    """The producer's command line, parsed and checked."""

    task: str | None
    args: list[str]
    count: int
    timeout: float | None
    json: bool
    list_tasks: bool
    no_wait: bool = False
    result_id: str | None = None
    then: tuple[tuple[str, ...], ...] = ()
    require_worker: bool = False
    metrics: str | None = None

    @classmethod
    def from_cli(cls, argv: list[str] | None = None) -> ProducerArgs:
        parser = OneLineParser(
            prog="python -m producer",
            description="Send a task through its celery_tasks contract and print the result. "
            "Arguments are converted by the contract's annotations.",
            epilog=EXAMPLES
            + "\n"
            + exit_codes_epilog(
                [EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_BAD_ARGUMENTS, EXIT_UNKNOWN_TASK,
                 EXIT_BROKER_UNREACHABLE, EXIT_TIMEOUT, EXIT_CONFIG, EXIT_TOPOLOGY,
                 EXIT_CONTRACT_MISMATCH, EXIT_CONTRACT_VIOLATION, EXIT_NO_WORKER]
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("task", nargs="?", help="the task name (see --list)")
        parser.add_argument("args", nargs="*", help="the task's arguments, in contract order")
        parser.add_argument("--count", type=positive_int, default=1,
                            help="send N tasks with these arguments (the batch path, as a "
                            "group of N identical calls) and print a summary")
        parser.add_argument("--then", action="append", nargs="+", default=[],
                            metavar=("TASK", "ARG"),
                            help="a chain: then run TASK with the result as its first "
                            "argument, followed by ARGs (repeatable)")
        parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                            help=f"seconds to wait for results, 0 = forever "
                            f"(default {DEFAULT_TIMEOUT:g})")
        parser.add_argument("--require-worker", action="store_true",
                            help="first ask the task's live workers (remote control) and "
                            "send nothing, exit 14, unless one can run the call")
        parser.add_argument("--metrics", metavar="DEST", type=_destination,
                            help="the batch's Prometheus metrics: - prints them after the "
                            "summary, an http(s):// URL pushes them to that Pushgateway")
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.add_argument("--list", dest="list_tasks", action="store_true",
                            help="list every contract with its signature and queue")
        parser.add_argument("--no-wait", action="store_true",
                            help="print the task id(s) and exit without waiting for results")
        parser.add_argument("--result", dest="result_id", metavar="ID",
                            help="wait for the result of a task sent earlier (needs a durable "
                            "result backend)")
        ns = parser.parse_intermixed_args(argv)
        if not ns.list_tasks and not ns.task:
            parser.error("the task name is required")
        if ns.timeout < 0 or ns.timeout != ns.timeout:
            parser.error(f"argument --timeout: must be >= 0, got {ns.timeout}")
        if ns.result_id and (ns.args or ns.no_wait or ns.count != 1 or ns.then):
            parser.error("--result takes only the task name and an id")
        if ns.then and (ns.no_wait or ns.count != 1):
            parser.error("--then makes a chain, which takes neither --count nor --no-wait")
        timeout = ns.timeout or None
        if ns.result_id and ns.require_worker:
            parser.error("--result takes only the task name and an id")
        if ns.list_tasks and ns.require_worker:
            parser.error("--require-worker goes with a call, not with --list")
        if ns.metrics and (ns.list_tasks or ns.result_id or ns.no_wait or ns.then):
            parser.error("--metrics goes with a call or a --count batch, not with --list, "
                         "--result, --no-wait or --then")
        if ns.metrics == "-" and ns.json:
            parser.error("--metrics - and --json both print to stdout: push the metrics to a "
                         "URL, or drop one")
        return cls(ns.task, ns.args, ns.count, timeout, ns.json, ns.list_tasks, ns.no_wait,
                   ns.result_id, tuple(tuple(step) for step in ns.then), ns.require_worker,
                   ns.metrics)


def _destination(text: str) -> str:
    from .metrics import check_destination

    try:
        return check_destination(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, sort_keys=True))


def _list(as_json: bool) -> int:
    if as_json:
        _print_json([
            {"name": name, "signature": describe(cls), "queue": name, "doc": cls.run.__doc__}
            for name, cls in CONTRACTS.items()
        ])
    else:
        for name, cls in CONTRACTS.items():
            print(f"{describe(cls)}  queue={name}")
    return EXIT_OK


def _summary(report: CountReport) -> str:
    line = (
        f"{report.task_name}: {report.count - report.unsent} sent, {report.succeeded} "
        f"succeeded, {report.failed} failed"
    )
    if report.pending_ids:
        line += f", {len(report.pending_ids)} without a result"
    if report.unsent:
        line += f", {report.unsent} not sent"
    return line + f" in {report.elapsed:.2f} s ({report.rate:.1f} tasks/s)"


def _batch(task: Any, call: tuple[list[Any], dict[str, Any]], args: ProducerArgs) -> int:
    bar = ProgressBar(args.count, enabled=sys.stdout.isatty() and not args.json)
    metrics = None
    if args.metrics:
        from .metrics import BatchMetrics

        metrics = BatchMetrics(task)

    def settled(outcome: Outcome) -> None:
        bar.advance(outcome.ok)
        if metrics is not None:
            metrics.add(outcome)

    try:
        report = send_count(task, call, args.count, args.timeout, on_outcome=settled)
    finally:
        bar.close()
    if args.json:
        _print_json(report.as_json())
    else:
        print(_summary(report))
    if metrics is not None and args.metrics:
        metrics.finish(report)
        metrics.emit(args.metrics)
    if report.pending_ids or report.unsent:
        pending = report.pending_ids
        named = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3
                                          else "")
        fate = ("those tasks stay queued and may still run" if not report.unconfirmed_ids else
                f"RabbitMQ never confirmed {len(report.unconfirmed_ids)} of them, so they may "
                "not be queued (is it under a resource alarm? see rabbitmqctl status)")
        unsent = f"; {report.unsent} were never sent" if report.unsent else ""
        raise TaskTimeout(
            f"{len(pending) + report.unsent} of {args.count} {task.name} results did not arrive "
            f"within {args.timeout:g} s ({named or 'none in flight'}; --json lists every id): "
            f"{fate}{unsent}"
        )
    if report.failed:
        first = report.failures[0]
        error = REMOTE_ERRORS.get(first.error_type, TaskFailed)
        raise error(
            f"{report.failed} of {args.count} {task.name} tasks failed; first: "
            f"{first.error_type}: {first.error_message}"
        )
    return EXIT_OK


def _fetch(contract: type[Contract], args: ProducerArgs, settings: Settings) -> int:
    """`--result ID`: wait for the stored outcome of a task sent earlier."""
    if settings.result_backend.startswith("rpc"):
        raise ConfigError(
            "--result needs a durable result backend: rpc:// delivers a result only to the "
            "process that sent the task (set CELERY_RESULT_BACKEND=redis://... or "
            "db+postgresql+psycopg://...)"
        )
    from celery_tasks.utils import create_worker_from

    _, task = create_worker_from(contract)
    check_result_backend(task.app)
    result = task.AsyncResult(args.result_id)
    try:
        value = wait_for(result, args.timeout, 0.1)
    except CeleryTimeoutError:
        raise TaskTimeout(
            f"no result for {task.name}[{args.result_id}] within {args.timeout:g} s"
        ) from None
    return _report(task.name, Outcome.from_state(result.id, result.state, value), args.json)


def _report(task_name: str, outcome: Outcome, as_json: bool) -> int:
    """Print one task's outcome (its result, or JSON); its error becomes the exit code."""
    if as_json:
        _print_json({"task": task_name, **outcome.as_json()})
    value = outcome.unwrap(task_name)
    if not as_json:
        print(value if isinstance(value, str) else json.dumps(value))
    return EXIT_OK


def _contract(name: str) -> type[Contract]:
    contract = CONTRACTS.get(name)
    if contract is None:
        raise UnknownTask(f"unknown task {name!r}: known tasks are {', '.join(CONTRACTS)}")
    return contract


def _chain_steps(first: Any, call: tuple[list[Any], dict[str, Any]],
                 args: ProducerArgs) -> list[Any]:
    """`TASK ARGS --then TASK ARGS...` as a chain's steps, every one checked (before the
    broker is even reached: bad input is exit 3 or 4 whatever the broker's state)."""
    from celery_tasks.canvas import Call, Step
    from celery_tasks.utils import create_worker_from

    steps: list[Any] = [Call(first, *call, immutable=False)]
    for name, *texts in args.then:
        _, task = create_worker_from(_contract(name))
        checked = check_call(task.contract, texts, {}, from_text=True, partial=True,
                             limit=payload_limit(task.app))
        steps.append(Step(task, *checked, immutable=False))
    return steps


def _chain(steps: list[Any], args: ProducerArgs) -> int:
    """Send the chain; print the last step's result, or exit with the failed step's error
    (with --json, the steps and their ids in either case)."""
    from celery_tasks.canvas import Chain

    sent = Chain[Any](steps).apply_async()
    report: dict[str, Any] = {"chain": [s.name for s in steps], "ids": sent.ids}
    try:
        value = sent.get(timeout=args.timeout)
    except (TaskFailed, ContractMismatch, ContractViolation, TaskTimeout) as exc:
        if args.json:  # their own exit codes follow
            status = "PENDING" if isinstance(exc, TaskTimeout) else "FAILURE"
            _print_json({**report, "status": status, "error": str(exc)})
        raise
    if args.json:
        _print_json({**report, "status": "SUCCESS", "result": value})
    else:
        print(value if isinstance(value, str) else json.dumps(value))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = ProducerArgs.from_cli(argv)
    if args.list_tasks:
        return _list(args.json)
    assert args.task is not None  # from_cli guarantees it
    contract = _contract(args.task)
    for name, *_ in args.then:
        _contract(name)
    from celery_tasks.rabbitmq_config import SETTINGS  # reads the settings, once

    tracing.configure(SETTINGS, "producer")  # traces, if the settings ask for them
    if args.metrics:
        from .metrics import require

        require()  # a missing extra: one line, before anything is sent

    if args.result_id is not None:
        return _fetch(contract, args, SETTINGS)
    from celery_tasks.utils import create_worker_from  # imports the Celery settings

    _, task = create_worker_from(contract)
    call = check_call(contract, args.args, {}, from_text=True, limit=payload_limit(task.app))
    steps = _chain_steps(task, call, args) if args.then else []
    load_result_backend(task.app)  # a driver not installed: one line naming its extra
    wait_for_broker(task.app, SETTINGS)
    check_result_backend(task.app)
    if args.require_worker:  # every step's contract, before anything is published
        for cls in [contract, *(_contract(name) for name, *_ in args.then)]:
            require_worker(task.app, describe_contract(cls))
    declare_topology(task.app)
    if args.no_wait:
        ids, missing = publish_count(task, call, args.count, args.timeout)
        if args.json:
            _print_json({"task": task.name, "ids": ids, "unconfirmed": missing})
        elif ids:
            print("\n".join(ids))
        if missing:  # the ids printed are queued; these may not be
            raise TaskTimeout(
                f"RabbitMQ confirmed {len(ids)} of {args.count} {task.name} tasks within "
                f"{args.timeout:g} s (their ids are printed); the other {missing} may not be "
                "queued (is it under a resource alarm? see rabbitmqctl status)")
        return EXIT_OK
    if steps:
        return _chain(steps, args)
    if args.count > 1 or args.metrics:
        return _batch(task, call, args)
    return _report(task.name, send(task, *call, timeout=args.timeout), args.json)


def entry() -> None:
    """The `producer` command (and `python -m producer`): errors as one line and an exit code."""
    run_cli(main)
