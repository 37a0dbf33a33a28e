"""`make demo`: the whole job on an embedded broker, with no services needed.

Starts one worker per contract on kombu's filesystem transport (a temporary folder) with a
file result backend, sends the article's task (prints 6), a chain over two contracts (each
step on its own contract's worker: prints 113) and a group of 200 `count_primes` tasks
(`--count`: prints the summary), then stops every worker it started.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from .processes import CONSUMER_DIR, Worker, run_producer, stop_all

STEPS = (
    ("the article's task", ("unique_magic_task", "1", "2", "3")),
    ("a chain: 1+2+3, the primes below that, plus 10 and 100",
     ("unique_magic_task", "1", "2", "3", "--then", "count_primes",
      "--then", "unique_magic_task", "10", "100")),
    ("a group of 200 identical calls", ("count_primes", "10000", "--count", "200")),
)


def implemented() -> list[str]:
    """The tasks the consumer implements (`python -m consumer --list`): a worker for each.
    A contract not implemented yet (README's "Add your own task", before step 3) has none."""
    out = subprocess.run([sys.executable, "-m", "consumer", "--list"], cwd=CONSUMER_DIR,
                         capture_output=True, text=True, timeout=60, check=True)
    return [line.split("(", 1)[0] for line in out.stdout.splitlines()]


def embedded_env(folder: Path) -> dict[str, str]:
    """Settings that point producer and workers at the same embedded broker."""
    (folder / "broker").mkdir()
    (folder / "results").mkdir()
    return {
        "CELERY_BROKER_URL": "filesystem://",
        "BROKER_FILESYSTEM_DIR": str(folder / "broker"),
        "CELERY_RESULT_BACKEND": f"file://{folder / 'results'}",
        "CELERY_TASKS_ENV_FILE": "",
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="celery-tasks-demo-") as tmp:
        folder = Path(tmp)
        env = embedded_env(folder)
        workers = [Worker(name, env, folder, concurrency=1) for name in implemented()]
        try:
            # One at a time: kombu's filesystem transport rewrites a shared exchange's
            # binding table (the workers' control mailbox) in place, so two workers
            # starting together can read it half written.
            for worker in workers:
                worker.launch()
                worker.wait_ready()
                print(f"demo: worker for {worker.task} is ready (pid {worker.process.pid})")  # type: ignore[union-attr]
            for what, step in STEPS:
                print(f"demo: {what}: python -m producer {' '.join(step)}", flush=True)
                out = run_producer(*step, "--timeout", "120", env=env, timeout=180)
                sys.stdout.write(out.stdout)
                sys.stderr.write(out.stderr)
                if out.returncode != 0:
                    print(f"demo: failed with exit code {out.returncode}", file=sys.stderr)
                    for worker in workers:  # what the workers saw, to find out why
                        tail = "\n".join(worker.log.splitlines()[-15:])
                        print(f"demo: worker for {worker.task}, last lines:\n{tail}",
                              file=sys.stderr)
                    return out.returncode
        finally:
            stop_all(workers)
            print(f"demo: stopped {len(workers)} workers")
    return 0


if __name__ == "__main__":
    argparse.ArgumentParser(prog="python -m harness.demo", description=__doc__).parse_args()
    sys.exit(main())
