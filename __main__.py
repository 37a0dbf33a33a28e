"""`python -m celery_tasks [--json | --markdown]`: every contract with its signature,
queue and fingerprint. `python -m celery_tasks diff REF`: how the contracts changed since
git REF, and in which order to deploy the change (core/evolution.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .core.cli import OneLineParser, exit_codes_epilog, positive_float, run_cli
from .core.contract import describe
from .core.discovery import REPLY_WINDOW, live_workers
from .core.errors import (
    EXIT_BREAKING,
    EXIT_BROKER_UNREACHABLE,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from .core.evolution import compare, contracts_at
from .core.fingerprint import describe_contract, fingerprint
from .core.version import pinned_commit
from .tasks import CONTRACTS

EXAMPLES = """examples:
  python -m celery_tasks              # one line per contract: fingerprint, signature
  python -m celery_tasks --json       # with each contract's full description
  python -m celery_tasks --markdown   # the table docs/contracts.md shows
  python -m celery_tasks diff HEAD~1  # what changed since then, and the deploy order
  python -m celery_tasks status       # the live workers of each contract, and if we can call them
  python -m celery_tasks asyncapi     # the AsyncAPI 3.0 document of the contracts
"""

STATUS_EXAMPLES = """examples:
  python -m celery_tasks status            # every contract, its live workers, callable or not
  python -m celery_tasks status --json     # the same, as JSON
"""

DIFF_EXAMPLES = """examples:
  python -m celery_tasks diff main        # against a branch, a tag or a commit
  python -m celery_tasks diff HEAD --json # uncommitted changes, as JSON

verdicts, per contract: unchanged (any deploy order: FULL); compatible, deploy consumers
first (BACKWARD); compatible, deploy producers first (FORWARD); BREAKING, with the reason
and what to do instead. A new task is compatible (consumers first); a removed one is
breaking.
"""


def rows() -> list[dict[str, Any]]:
    """Each contract of celery_tasks/tasks.py, described."""
    return [{"name": name, "signature": describe(cls), "fingerprint": fingerprint(d),
             "doc": (cls.run.__doc__ or "").strip(), "description": d}
            for name, cls in CONTRACTS.items() for d in [describe_contract(cls)]]


def markdown() -> str:
    """The contracts as a Markdown table (what `make vendor` writes into the docs)."""
    lines = ["| task (queue) | signature | what it does | fingerprint |", "|---|---|---|---|"]
    for row in rows():
        signature = row["signature"].removeprefix(row["name"])
        lines.append(f"| `{row['name']}` | `{signature}` | {row['doc']} | "
                     f"`{row['fingerprint']}` |")
    return "\n".join(lines)


def subcommand(name: str, description: str, epilog: str) -> OneLineParser:
    """The parser of `python -m celery_tasks NAME`."""
    return OneLineParser(prog=f"python -m celery_tasks {name}", description=description,
                         epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def diff(argv: list[str]) -> int:
    """`diff REF`: each contract at git REF against this copy (see core/evolution.py)."""
    parser = subcommand("diff", "Compare every contract at git REF with this copy (its "
                        "working tree) and say, per contract, whether the change is "
                        "compatible and in which order to deploy it.", DIFF_EXAMPLES + "\n"
                        + exit_codes_epilog([EXIT_OK, EXIT_USAGE, EXIT_BREAKING]))
    parser.add_argument("ref", help="a git commit, branch or tag: the deployed version")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    commit, old = contracts_at(args.ref, Path(__file__).resolve().parent)
    new = {row["name"]: row["description"] for row in rows()}
    changes = compare(old, new)
    if args.json:
        print(json.dumps({"base": args.ref, "base_commit": commit,
                          "breaking": any(c.breaking for c in changes),
                          "contracts": [c.as_json() for c in changes]}, sort_keys=True))
    else:
        print(f"contracts since {args.ref} ({commit[:12]}):")
        for change in changes:
            print(f"  {change.line()}")
    return EXIT_BREAKING if any(c.breaking for c in changes) else EXIT_OK


def status(argv: list[str]) -> int:
    """`status`: the live workers of every contract, and whether this copy can call them."""
    parser = subcommand("status", "Ask every live worker (Celery's remote control) what it "
                        "runs and list, per contract of this copy, its workers: node, host, "
                        "pinned celery_tasks commit, fingerprint, and whether this copy's "
                        "contract can call it.", STATUS_EXAMPLES + "\n" + exit_codes_epilog(
                            [EXIT_OK, EXIT_USAGE, EXIT_BROKER_UNREACHABLE, EXIT_CONFIG]))
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--timeout", type=positive_float, default=REPLY_WINDOW,
                        help=f"seconds to wait for the workers' answers (default "
                        f"{REPLY_WINDOW:g})")
    args = parser.parse_args(argv)
    from .core.broker import wait_for_broker
    from .rabbitmq_config import SETTINGS  # reads the settings
    from .utils import create_worker_from

    app, _ = create_worker_from(next(iter(CONTRACTS.values())))
    wait_for_broker(app, SETTINGS)
    workers = live_workers(app, args.timeout)
    mine = {name: describe_contract(cls) for name, cls in CONTRACTS.items()}
    if args.json:
        print(json.dumps({"commit": pinned_commit(),
                          "contracts": {n: fingerprint(d) for n, d in mine.items()},
                          "workers": [w.as_json(mine) for w in workers]}, sort_keys=True))
        return EXIT_OK
    print(f"this copy: celery_tasks {pinned_commit()}; {len(workers)} live workers")
    for name, description in mine.items():
        runs = [w for w in workers if name in w.contracts]
        print(f"{name} {fingerprint(description)}: "
              + (f"{len(runs)} live" if runs else "no live worker"))
        for worker in runs:
            reason = worker.verdict(description)
            print(f"  {worker.node}  host {worker.host}  celery_tasks {worker.commit}  "
                  f"{fingerprint(worker.contracts[name])}  "
                  + ("can call" if reason is None else f"CANNOT call: {reason}"))
    for worker in workers:
        if not worker.answered:
            print(f"(also live: {worker.node}, whose celery_tasks predates discovery)")
    return EXIT_OK


def asyncapi(argv: list[str]) -> int:
    """`asyncapi`: the AsyncAPI 3.0 document of this copy's contracts (core/asyncapi.py)."""
    parser = subcommand("asyncapi", "Write the AsyncAPI 3.0 document of this copy's "
                        "contracts (JSON): a channel per task queue and dead-letter queue, the "
                        "task and result messages with JSON Schemas from the contracts, the "
                        "headers, the AMQP bindings.", exit_codes_epilog([EXIT_OK, EXIT_USAGE]))
    parser.add_argument("--output", metavar="FILE", help="write it to FILE, not stdout")
    args = parser.parse_args(argv)
    from . import __version__
    from .core.asyncapi import document, to_json

    text = to_json(document(CONTRACTS, __version__, pinned_commit())) + "\n"
    if args.output is not None:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    return EXIT_OK


def main(argv: list[str]) -> int:
    if argv[:1] == ["asyncapi"]:
        return asyncapi(argv[1:])
    if argv[:1] == ["diff"]:
        return diff(argv[1:])
    if argv[:1] == ["status"]:
        return status(argv[1:])
    parser = OneLineParser(prog="python -m celery_tasks",
                           description="List the task contracts of this celery_tasks copy "
                           "with their fingerprints (see docs/contracts.md). 'python -m "
                           "celery_tasks diff REF' compares them with git REF; 'python -m "
                           "celery_tasks status' lists the live workers; 'python -m "
                           "celery_tasks asyncapi' writes an AsyncAPI document (see their help).",
                           epilog=EXAMPLES + "\n" + exit_codes_epilog([EXIT_OK, EXIT_USAGE]),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON, with this copy's commit")
    form.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps({"commit": pinned_commit(), "contracts": rows()}, sort_keys=True))
    elif args.markdown:
        print(markdown())
    else:
        print(f"celery_tasks {pinned_commit()}")
        for row in rows():
            print(f"{row['fingerprint']}  {row['signature']}")
    return EXIT_OK


run_cli(lambda: main(sys.argv[1:]))
