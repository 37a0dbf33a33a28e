"""Errors a user can act on, each with its own exit code.

Producer and consumer share these, so a failure reads the same on both sides and a
script can tell one from another by the exit code alone.
"""

from __future__ import annotations

from billiard.einfo import ExceptionWithTraceback

EXIT_OK = 0  # everything asked for was done
EXIT_TASK_FAILED = 1  # a task ran and raised (with --count: at least one did)
EXIT_USAGE = 2  # the command line itself is wrong: unknown option, missing task name
EXIT_BAD_ARGUMENTS = 3  # the task's arguments do not match its contract; nothing was sent
EXIT_UNKNOWN_TASK = 4  # no contract (or no implementation) has that name
EXIT_BROKER_UNREACHABLE = 5  # the broker (or a durable result backend) could not be reached
EXIT_TIMEOUT = 6  # the result did not arrive within --timeout
EXIT_CONFIG = 7  # a setting (environment or .env) is invalid
EXIT_IMPLEMENTATION = 8  # a worker's implementation does not fulfil its contract
EXIT_UNHEALTHY = 9  # --health: no worker on this host answered a ping
EXIT_TOPOLOGY = 10  # a queue or exchange exists with other arguments than ours
EXIT_CONTRACT_MISMATCH = 11  # producer and worker hold incompatible versions of the contract
EXIT_CONTRACT_VIOLATION = 12  # the worker found arguments or a result that break the contract
EXIT_BREAKING = 13  # `python -m celery_tasks diff`: a contract change breaks a deployed side
EXIT_NO_WORKER = 14  # --require-worker: no live worker can run the call; nothing was sent
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT), or its output was closed

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_TASK_FAILED: "the task raised an error (with --count: at least one task failed)",
    EXIT_USAGE: "bad command line (unknown option, missing task name)",
    EXIT_BAD_ARGUMENTS: "arguments do not match the task's contract; nothing was sent",
    EXIT_UNKNOWN_TASK: "unknown task name",
    EXIT_BROKER_UNREACHABLE: "broker unreachable within BROKER_CONNECT_TIMEOUT, or result "
    "backend unreachable",
    EXIT_TIMEOUT: "no result within --timeout",
    EXIT_CONFIG: "invalid setting in the environment or .env",
    EXIT_IMPLEMENTATION: "implementation missing or its run() differs from the contract",
    EXIT_UNHEALTHY: "--health: no worker of this host answered a ping",
    EXIT_TOPOLOGY: "a queue exists on the broker with different arguments (406)",
    EXIT_CONTRACT_MISMATCH: "producer and worker hold incompatible contract versions",
    EXIT_CONTRACT_VIOLATION: "the worker refused the arguments or the result broke the contract",
    EXIT_BREAKING: "a contract change is breaking (diff): see its reason and what to do instead",
    EXIT_NO_WORKER: "--require-worker: no live worker can run the call; nothing was sent",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C), or the output closed",
}


class CeleryTasksError(Exception):
    """Base of every error this project reports to a user as one line."""

    exit_code = EXIT_TASK_FAILED


class ConfigError(CeleryTasksError, ValueError):
    """A setting is missing or malformed; the message names the variable."""

    exit_code = EXIT_CONFIG


class UsageError(CeleryTasksError):
    """What the command line asked for cannot be done as asked (an unknown git ref, a file
    that cannot be written)."""

    exit_code = EXIT_USAGE


class BadArguments(CeleryTasksError, TypeError):
    """A call does not match its contract's signature; nothing was published."""

    exit_code = EXIT_BAD_ARGUMENTS


class UnknownTask(CeleryTasksError, KeyError):
    """No contract or implementation has the requested name."""

    exit_code = EXIT_UNKNOWN_TASK

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BrokerUnreachable(CeleryTasksError, ConnectionError):
    """The broker did not answer within the connect timeout."""

    exit_code = EXIT_BROKER_UNREACHABLE


class TaskFailed(CeleryTasksError):
    """The task ran on a worker and raised; the message carries its type and text."""

    exit_code = EXIT_TASK_FAILED


class TaskTimeout(CeleryTasksError, TimeoutError):
    """No result arrived in time; the task may still run later."""

    exit_code = EXIT_TIMEOUT


class ImplementationError(CeleryTasksError, TypeError):
    """A worker class does not implement its contract faithfully."""

    exit_code = EXIT_IMPLEMENTATION


class TopologyMismatch(CeleryTasksError):
    """RabbitMQ refused a declaration (406 PRECONDITION_FAILED): the queue differs from ours."""

    exit_code = EXIT_TOPOLOGY


class ContractMismatch(CeleryTasksError):
    """The producer's contract cannot call the worker's (see fingerprint.py); nothing ran."""

    exit_code = EXIT_CONTRACT_MISMATCH


class ContractViolation(CeleryTasksError):
    """On the worker: arguments, or the implementation's result, do not match the contract."""

    exit_code = EXIT_CONTRACT_VIOLATION


class ContractNotImplemented(NotImplementedError):
    """Raised by a contract stub's ``run``: stubs describe work, workers do it."""


def refusal(exc: BaseException) -> tuple[int | None, str]:
    """RabbitMQ's reply code for an operation it refused by closing the channel or the
    connection (403 access refused, 404 not found, 406 precondition failed...), None for any
    other error; and the error's first line. py-amqp's errors without a reply (a connection
    already closed) have code 0; one for a code it has no class for keeps it in reply_code."""
    code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
    text = str(getattr(exc, "reply_text", None) or exc).splitlines()
    refused = isinstance(code, int) and not isinstance(code, bool) and code > 0
    return (code if refused else None), (text[0] if text else type(exc).__name__)


def message_refused(exc: BaseException, what: str) -> ConfigError | None:
    """RabbitMQ's refusal of a message over its max_message_size (406), as the setting to
    fix; None for any other error."""
    code, text = refusal(exc)
    if code != 406 or "max size" not in text:
        return None
    return ConfigError(
        f"RabbitMQ refused {what}: {text.rsplit(' - ', 1)[-1]}; set "
        "CELERY_TASKS_MAX_MESSAGE_SIZE to the broker's max_message_size, so that such calls "
        "are refused before they are sent")


#: Errors raised on a worker that keep their own exit code when they reach the producer,
#: by the name the result carries; any other remote error is TaskFailed.
REMOTE_ERRORS: dict[str, type[CeleryTasksError]] = {
    "ContractMismatch": ContractMismatch,
    "ContractViolation": ContractViolation,
    "NotRegistered": UnknownTask,
}


def remote_error(where: str, value: object) -> CeleryTasksError:
    """The error a caller gets for a task that raised `value` on a worker; `where` names the
    task (`divide[ID]`, `chain step 2 of 3, divide[ID]`). Contract errors keep their own
    class (and exit code); any other is TaskFailed."""
    kind = type(value).__name__
    return REMOTE_ERRORS.get(kind, TaskFailed)(f"{where} raised {kind}: {value}")


#: Telemetry's outcome for a task that ended with one of these errors (by the name its
#: result carries); any other error is "failure".
ERROR_OUTCOMES = {
    "ContractMismatch": "contract_mismatch",
    "ContractViolation": "contract_violation",
    "TimeLimitExceeded": "timeout",
    "SoftTimeLimitExceeded": "timeout",
    "WorkerLostError": "worker_lost",
}


def unwrapped(error: BaseException) -> BaseException:
    """A task's own error, as a pool process's error arrives wrapped (billiard's
    ExceptionWithTraceback); only that wrapper: a Retry's own `exc` is the error it retries."""
    return error.exc if isinstance(error, ExceptionWithTraceback) else error


def outcome_of(error: BaseException | str) -> str:
    """The outcome metrics and spans name for a task's error (or its type's name)."""
    name = error if isinstance(error, str) else type(unwrapped(error)).__name__
    return ERROR_OUTCOMES.get(name, "failure")
