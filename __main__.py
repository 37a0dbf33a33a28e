"""`python -m celery_tasks [--json | --markdown]`: every contract with its signature,
queue and fingerprint."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .core.cli import OneLineParser, exit_codes_epilog, run_cli
from .core.contract import describe
from .core.errors import EXIT_OK, EXIT_USAGE
from .core.fingerprint import describe_contract, fingerprint
from .core.version import pinned_commit
from .tasks import CONTRACTS

EXAMPLES = """examples:
  python -m celery_tasks              # one line per contract: fingerprint, signature
  python -m celery_tasks --json       # with each contract's full description
  python -m celery_tasks --markdown   # the table docs/contracts.md shows
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


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m celery_tasks",
                           description="List the task contracts of this celery_tasks copy "
                           "with their fingerprints (see docs/contracts.md).",
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
