"""What the producer and consumer command lines share: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from .errors import EXIT_CODES, EXIT_INTERRUPTED, EXIT_USAGE, CeleryTasksError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def exit_codes_epilog(codes: list[int]) -> str:
    """The exit-code table for the end of `--help` (Ctrl-C's 130 is always there)."""
    codes = [*codes, *([] if EXIT_INTERRUPTED in codes else [EXIT_INTERRUPTED])]
    lines = ["exit codes:"] + [f"  {code:<4} {EXIT_CODES[code]}" for code in codes]
    return "\n".join(lines)


def run_cli(main: Callable[[], int]) -> NoReturn:
    """Run `main` and exit with its code; a user-facing error becomes one line on stderr."""
    try:
        code = main()
        sys.stdout.flush()  # here, so that a closed pipe is caught below
    except CeleryTasksError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # whoever read our output left (`| head`): stop as Ctrl-C does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_INTERRUPTED
    # Collect pending results while their backend is still alive: left to interpreter
    # shutdown, their finalizers print tracebacks (Redis backend: unsubscribe on a closed
    # connection).
    gc.collect()
    sys.exit(code)
