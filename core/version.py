"""Which celery_tasks commit this copy is: what producer and worker report on a mismatch."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@cache
def pinned_commit() -> str:
    """The commit of this copy: a COMMIT file (written into images), else git, else 'unknown'.

    In a producer or consumer checkout this copy is a submodule, so git names the commit
    the parent repository pinned.
    """
    stamp = HERE / "COMMIT"
    if stamp.is_file() and stamp.read_text().strip() not in {"", "unknown"}:
        return stamp.read_text().strip()[:12]
    try:
        out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
