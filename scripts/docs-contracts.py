"""Write the contracts' table (python -m celery_tasks --markdown) into docs/contracts.md,
between its marker lines; `--check` only says whether it is up to date (exit 1 if not)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "contracts.md"
START = "<!-- contracts: start (make vendor writes this table) -->"
END = "<!-- contracts: end -->"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if out of date")
    check = parser.parse_args(argv).check
    table = subprocess.run([sys.executable, "-m", "celery_tasks", "--markdown"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    text = DOC.read_text()
    if START not in text or END not in text:
        print(f"error: {DOC} lacks the lines {START!r} and {END!r}", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    new = f"{head}{START}\n{table.strip()}\n{END}{rest.split(END, 1)[1]}"
    if check:
        if new != text:
            print(f"error: the contracts' table in {DOC.relative_to(ROOT)} is out of date: "
                  "run 'make vendor' (or python scripts/docs-contracts.py)", file=sys.stderr)
            return 1
        print(f"ok: {DOC.relative_to(ROOT)} lists every contract")
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
