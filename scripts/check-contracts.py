"""Compare the contracts pinned in producer/ and consumer/ and name any skew.

Each side's vendored celery_tasks describes its contracts (`python -m celery_tasks
--json`, run from that side's folder). Any fingerprint that differs is skew: the output
says whether the producer's version can still call the consumer's under the
compatibility rule (celery_tasks/core/fingerprint.py). Exit 0 when in sync, 1 on any skew.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celery_tasks.core.fingerprint import incompatibility  # noqa: E402


def contracts(part: str) -> tuple[str, dict[str, dict]]:
    out = subprocess.run([sys.executable, "-m", "celery_tasks", "--json"], cwd=ROOT / part,
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no output"]
        sys.exit(f"error: cannot list the contracts in {part}/ ({lines[-1]}): run 'make init'")
    data = json.loads(out.stdout)
    return data["commit"], {c["name"]: c for c in data["contracts"]}


def main() -> int:
    (p_commit, producer), (c_commit, consumer) = contracts("producer"), contracts("consumer")
    skew = 0
    for name in sorted(producer.keys() | consumer.keys()):
        p, c = producer.get(name), consumer.get(name)
        if p is None or c is None:
            side = "producer" if p is None else "consumer"
            print(f"skew: {name}: only the {'consumer' if p is None else 'producer'} has it "
                  f"(the {side} pins celery_tasks {p_commit if p is None else c_commit})")
            skew += 1
        elif p["fingerprint"] != c["fingerprint"]:
            reason = incompatibility(p["description"], c["description"])
            verdict = "compatible" if reason is None else f"INCOMPATIBLE: {reason}"
            print(f"skew: {name}: producer {p['fingerprint']} (celery_tasks {p_commit}), "
                  f"consumer {c['fingerprint']} (celery_tasks {c_commit}): {verdict}")
            skew += 1
        else:
            print(f"ok: {name} {p['fingerprint']}")
    return 1 if skew else 0


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    sys.exit(main())
