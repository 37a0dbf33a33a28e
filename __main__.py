"""`python -m celery_tasks [--json]`: every contract with its signature and fingerprint."""

from __future__ import annotations

import json
import sys

from .contract import describe
from .fingerprint import describe_contract, fingerprint
from .tasks import CONTRACTS
from .version import pinned_commit


def main(argv: list[str]) -> int:
    if argv not in ([], ["--json"]):
        print("error: usage: python -m celery_tasks [--json]", file=sys.stderr)
        return 2
    rows = [{"name": name, "signature": describe(cls), "fingerprint": fingerprint(d),
             "description": d}
            for name, cls in CONTRACTS.items() for d in [describe_contract(cls)]]
    if argv:
        print(json.dumps({"commit": pinned_commit(), "contracts": rows}, sort_keys=True))
    else:
        print(f"celery_tasks {pinned_commit()}")
        for row in rows:
            print(f"{row['fingerprint']}  {row['signature']}")
    return 0


sys.exit(main(sys.argv[1:]))
