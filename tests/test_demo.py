"""`make demo` runs the whole job on the embedded broker, with no RabbitMQ reachable."""

from __future__ import annotations

import re
import subprocess

from celery_tasks.tasks import CONTRACTS
from harness.processes import ROOT, clean_env
from tests.test_broker_unreachable import closed_port


def test_make_demo_needs_no_services() -> None:
    # Point every RabbitMQ setting at a closed port: the demo must not need it.
    env = clean_env({"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(closed_port())})
    out = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "6" in lines
    assert "113" in lines  # the chain: 1+2+3, the 3 primes below 6, plus 10 and 100
    assert any(re.fullmatch(r"count_primes: 200 sent, 200 succeeded, 0 failed in .*", line)
               for line in lines), out.stdout
    assert f"demo: stopped {len(CONTRACTS)} workers" in lines
    assert "Traceback" not in out.stderr
    # The embedded broker keeps all its files in its temporary folder, none in the tree.
    for part in ("producer", "consumer"):
        assert not (ROOT / part / "control").exists()
