"""A minimal progress bar for terminals: one line, redrawn in place on stderr."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """Shows `done/total` and a bar; silent unless enabled (stdout is a terminal)."""

    width = 30

    def __init__(self, total: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total, self.enabled, self.stream, self.done = total, enabled, stream, 0

    def advance(self, ok: bool = True) -> None:
        self.done += 1
        if self.enabled and (self.done == self.total or self.done % max(self.total // 100, 1) == 0):
            filled = self.width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
