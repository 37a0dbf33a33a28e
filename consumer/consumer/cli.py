"""`python -m consumer TASK_NAME`: start one worker that consumes only that task's queue."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass

from celery.signals import celeryd_after_setup

from celery_tasks.core.broker import load_result_backend, wait_for_broker
from celery_tasks.core.cli import OneLineParser, exit_codes_epilog, positive_int, run_cli
from celery_tasks.core.contract import check_implementation, describe
from celery_tasks.core.errors import (
    EXIT_BROKER_UNREACHABLE,
    EXIT_CONFIG,
    EXIT_IMPLEMENTATION,
    EXIT_OK,
    EXIT_TOPOLOGY,
    EXIT_UNHEALTHY,
    EXIT_UNKNOWN_TASK,
    EXIT_USAGE,
    UnknownTask,
)
from celery_tasks.core.settings import Settings

from .implementations import IMPLEMENTATIONS, WorkerDefaults

EXAMPLES = """examples:
  python -m consumer unique_magic_task
  python -m consumer count_primes --concurrency 2 --loglevel debug
  python -m consumer sleep_echo --pool threads --concurrency 8
  python -m consumer --list
  python -m consumer --health        # does a worker on this host answer a ping?
"""
POOLS = ("prefork", "threads", "solo")
#: Pools where Celery enforces soft and hard time limits (it cannot stop a thread).
LIMITED_POOLS = ("prefork",)
LOGLEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class WorkerArgs:
    """The worker's command line, parsed and checked."""

    task: str | None
    concurrency: int | None
    loglevel: str
    pool: str | None
    list_tasks: bool
    health: bool = False
    prefetch_multiplier: int | None = None

    @classmethod
    def from_cli(cls, argv: list[str] | None = None) -> WorkerArgs:
        parser = OneLineParser(
            prog="python -m consumer",
            description="Start a Celery worker for one task; it consumes only that task's queue.",
            epilog=EXAMPLES
            + "\n"
            + exit_codes_epilog(
                [EXIT_OK, EXIT_USAGE, EXIT_UNKNOWN_TASK, EXIT_BROKER_UNREACHABLE, EXIT_CONFIG,
                 EXIT_IMPLEMENTATION, EXIT_UNHEALTHY, EXIT_TOPOLOGY]
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("task", nargs="?", help="the task name (see --list)")
        parser.add_argument(
            "--concurrency", type=positive_int,
            help="pool size (default: the implementation's, see --list; 'cpus' is one per CPU)"
        )
        parser.add_argument("--loglevel", default="info", type=str.lower, choices=LOGLEVELS)
        parser.add_argument("--pool", choices=POOLS,
                            help="worker pool (default: the implementation's, see --list)")
        parser.add_argument("--prefetch-multiplier", type=positive_int,
                            help="unacknowledged messages per pool slot (default: the "
                            "implementation's; late acknowledgement keeps any value safe)")
        parser.add_argument("--list", dest="list_tasks", action="store_true",
                            help="list the tasks this consumer implements and exit")
        parser.add_argument("--health", action="store_true",
                            help="exit 0 if a worker on this host (for TASK, if given) answers "
                            "a ping; for container health checks")
        ns = parser.parse_args(argv)
        if not (ns.list_tasks or ns.health) and not ns.task:
            parser.error("the task name is required")
        return cls(ns.task, ns.concurrency, ns.loglevel, ns.pool, ns.list_tasks, ns.health,
                   ns.prefetch_multiplier)


def defaults_of(impl: type) -> type[WorkerDefaults]:
    """The pool, concurrency and prefetch an implementation runs with unless told otherwise."""
    return impl if issubclass(impl, WorkerDefaults) else WorkerDefaults


def main(argv: list[str] | None = None) -> int:
    args = WorkerArgs.from_cli(argv)
    if args.list_tasks:
        for name, cls in IMPLEMENTATIONS.items():
            run = defaults_of(cls)
            print(f"{describe(cls)}  queue={name}  implementation={cls.__qualname__}  "
                  f"pool={run.pool} concurrency={run.concurrency or 'cpus'} "
                  f"prefetch={run.prefetch_multiplier} "
                  f"time-limits={'enforced' if run.pool in LIMITED_POOLS else 'not-enforced'}")
        return EXIT_OK
    from celery_tasks.rabbitmq_config import SETTINGS  # reads the settings, once

    if args.health:
        if args.task is not None and args.task not in IMPLEMENTATIONS:
            raise UnknownTask(f"unknown task {args.task!r}: this consumer implements "
                              f"{', '.join(IMPLEMENTATIONS)}")
        return _health(args.task, SETTINGS)
    assert args.task is not None  # from_cli guarantees it
    impl = IMPLEMENTATIONS.get(args.task)
    if impl is None:
        raise UnknownTask(
            f"unknown task {args.task!r}: this consumer implements {', '.join(IMPLEMENTATIONS)}"
        )
    check_implementation(impl)
    from celery_tasks.worker import observe

    observe.check(SETTINGS, args.task)  # a missing telemetry extra: one line, before connecting

    from celery_tasks.utils import create_worker_from  # imports the Celery settings

    app, _ = create_worker_from(impl)
    load_result_backend(app)  # a driver not installed: one line naming its extra (exit 7)
    wait_for_broker(app, SETTINGS)
    defaults = defaults_of(impl)
    pool = args.pool or defaults.pool
    if pool not in LIMITED_POOLS:
        note = (f"consumer: note: the {pool} pool does not enforce time limits "
                f"(soft {impl.soft_time_limit:g} s, hard {impl.time_limit:g} s); "
                "--pool prefork does")
        # Said once the worker is set up, so that an error before it stays one line.
        celeryd_after_setup.connect(lambda *_, **__: print(note, file=sys.stderr), weak=False)
    argv_worker = [
        "worker",
        f"--loglevel={args.loglevel}",
        f"--pool={pool}",
        f"--prefetch-multiplier={args.prefetch_multiplier or defaults.prefetch_multiplier}",
        f"--hostname={args.task}.{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    concurrency = args.concurrency or defaults.concurrency
    if concurrency:
        argv_worker.append(f"--concurrency={concurrency}")
    app.worker_main(argv_worker)
    return EXIT_OK


def _health(task: str | None, settings: Settings) -> int:
    """Ping the workers and look for one of this host's (for `task`, if given)."""
    from celery_tasks.utils import create_worker_from

    impl = IMPLEMENTATIONS.get(task or "", next(iter(IMPLEMENTATIONS.values())))
    app, _ = create_worker_from(impl)
    wait_for_broker(app, settings, timeout=5)
    prefix, suffix = f"{task}." if task else "", f"@{socket.gethostname()}"
    replies = app.control.ping(timeout=3.0)
    nodes = [node for reply in replies for node in reply]
    if any(n.startswith(prefix) and n.endswith(suffix) for n in nodes):
        return EXIT_OK
    print(f"error: no worker{' for ' + task if task else ''} on {suffix[1:]} answered a ping",
          file=sys.stderr)
    return EXIT_UNHEALTHY


def entry() -> None:
    """The `consumer` command (and `python -m consumer`): errors as one line and an exit code."""
    run_cli(main)
