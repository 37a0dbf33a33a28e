"""Typed workflows across contracts: `chain`, `group` and `chord`, under Celery's names.

    from celery_tasks import chain, chord, group
    from celery_tasks.remote import remote
    from celery_tasks.tasks import CountPrimesTask, MagicCeleryTask, SumNumbersTask

    magic = remote(MagicCeleryTask.run)
    primes = remote(CountPrimesTask.run)
    total = remote(SumNumbersTask.run)

    chain(magic.s(1, 2, 3), primes.s(), magic.s(10, 100)).delay().get()  # 113
    group(magic.s(i, i, i) for i in range(1000)).delay().get()           # [0, 3, 6, ...]
    chord([magic.s(1, 2, 3), magic.s(4, 5, 6)], total.s()).delay().get()  # 21 (Redis, PostgreSQL)

`remote(C.run).s(...)` given every argument is a complete call (`Call`); given every
argument but the first, a chain step (`Step`) that the step before it completes with its
result; `.si(...)` is a complete call that ignores that result (`Fixed`). Each argument is
checked against its contract when the signature is made; the argument a step receives
from the step before it is checked by that step's worker, before the step runs. mypy
checks a chain: a step whose result the next step's first parameter does not take is an
error.

The routing rule: every signature carries its own contract's routing (its exchange and
routing key, which reach its queue alone) and contract headers (description, fingerprint,
pinned commit), so whoever publishes it — this producer, or the worker that finished the
step before — sends it to that contract's queue, where that contract's workers check it. A
worker never routes a step by its own app's defaults, and a step whose worker holds an
incompatible contract ends in ContractMismatch at the caller. The producer declares every
step's queue before publishing, so a later step waits in its queue even if no worker of it
runs yet.

The backend rule: chains and groups work with every result backend, `rpc://` included:
every step and member replies to the reply queue of the first signature's app. A chord
needs a backend that counts its header's results (Redis, PostgreSQL): with `rpc://` it is
refused before anything is published. A group of many calls is published on the batch path
(batched confirms: celery_tasks.publisher.stream) when the broker is RabbitMQ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

import celery
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.exceptions import OperationalError

from .core import tracing
from .core.contract import binds_partially, check_call, contract_headers, payload_limit
from .core.errors import (
    BadArguments,
    BrokerUnreachable,
    CeleryTasksError,
    ConfigError,
    TaskFailed,
    TaskTimeout,
    refusal,
    remote_error,
)
from .core.results import backend_errors, declare_reply_queue, wait_for
from .core.topology import declare_topology
from .publisher.connection import supports_batch_path, uses_rpc
from .publisher.stream import collect_results, send_stream
from .remote import Pending

__all__ = ["Call", "Chain", "ChainResult", "Chord", "ChordResult", "Fixed", "Group",
           "GroupFailed", "GroupResult", "Step", "chain", "chord", "group", "signature"]

R_co = TypeVar("R_co", covariant=True)
A_contra = TypeVar("A_contra", contravariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
R = TypeVar("R")

#: Seconds to wait for each step's own outcome when naming the step a chain failed at.
STEP_OUTCOME_WAIT = 2.0


class _Signature:
    """A contract's task with checked arguments."""

    def __init__(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any],
                 immutable: bool) -> None:
        self.task, self.args, self.kwargs, self.immutable = task, list(args), kwargs, immutable

    @property
    def name(self) -> str:
        return str(self.task.name)

    def celery_signature(self, reply_to: str | None = None) -> Any:
        """The Celery signature, with its contract's routing and headers (the routing rule,
        see the module docstring): a plain Celery signature, for Celery's own canvas."""
        # By the task's own exchange, as Celery's delay() (a producer may not write to the
        # default exchange); kombu's embedded brokers know only the exchanges declared in
        # the process itself, so there the default exchange, straight to the queue.
        exchange = self.name if supports_batch_path(self.task.app) else ""
        # declare=[]: the queues were declared before publishing (_declare_queues), and a
        # producer's user may not declare (configure) a task's exchange at all.
        options: dict[str, Any] = {"exchange": exchange, "routing_key": self.name,
                                   "declare": [],
                                   "headers": dict(contract_headers(type(self.task)))}
        if reply_to:
            options["reply_to"] = reply_to
        return self.task.signature(self.args, self.kwargs, immutable=self.immutable, **options)

    def __repr__(self) -> str:
        args = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.name}.{'si' if self.immutable else 's'}({args})"


class Call(_Signature, Generic[R_co]):
    """A complete call of a contract: `remote(C.run).s(every argument)`."""

    def delay(self) -> Pending[R_co]:
        """Publish it alone, as `remote(C.run).send(...)`."""
        return self.apply_async()

    def apply_async(self, **options: Any) -> Pending[R_co]:
        with _sending(f"a {self.name} call"):
            sent = self.task.apply_async(self.args, self.kwargs, **options)
        return Pending(sent, self.name, 60.0)


class Fixed(Call[R_co]):
    """A complete call that ignores the result of the step before it: `.si(...)`."""


class Step(_Signature, Generic[A_contra, R_co]):
    """A chain step (or a chord's body) that takes the previous result as its first
    argument: `remote(C.run).s(every argument but the first)`."""


def signature(task: Any, args: Sequence[Any], kwargs: dict[str, Any],
              immutable: bool) -> Any:
    """`Remote.s` and `Remote.si`: a Step if the arguments leave out exactly the first
    parameter (and not `immutable`), else a complete Call; BadArguments otherwise."""
    contract, limit = type(task).contract, payload_limit(task.app)
    if not immutable and binds_partially(contract, args, kwargs):
        try:  # as mypy's overloads: a Step if the values fit too, else a complete Call
            checked = check_call(contract, args, kwargs, partial=True, limit=limit)
        except BadArguments as as_step:
            try:
                checked = check_call(contract, args, kwargs, limit=limit)
            except BadArguments:
                raise as_step from None
            return Call(task, *checked, immutable=False)
        return Step(task, *checked, immutable=False)
    checked = check_call(contract, args, kwargs, limit=limit)
    return (Fixed if immutable else Call)(task, *checked, immutable=immutable)


def _declare_queues(signatures: Iterable[_Signature]) -> None:
    """Declare the queue of every contract of a workflow before publishing, once per
    process (topology.declare_topology: a user who may not declare uses the queue as its
    workers declared it, and one that does not exist yet is ConfigError)."""
    for sig in {s.name: s for s in signatures}.values():
        key = (str(sig.task.app.conf.broker_url), sig.name)
        if key not in _DECLARED:
            declare_topology(sig.task.app, [sig.name])
            _DECLARED.add(key)


_DECLARED: set[tuple[str, str]] = set()


@contextlib.contextmanager
def _sending(what: str) -> Iterator[None]:
    """Errors while publishing `what` as one line: RabbitMQ refusing access is ConfigError
    (exit 7); the broker or the result backend lost is BrokerUnreachable (exit 5)."""
    try:
        yield
    except CeleryTasksError:
        raise
    except OperationalError as exc:
        raise BrokerUnreachable(f"could not send {what}: {exc}") from None
    except Exception as exc:
        code, text = refusal(exc)
        if code == 403:
            raise ConfigError(f"RabbitMQ refused access while sending {what} ({text}): see "
                              "docs/security.md for the permissions a producer needs") from None
        if code is not None:  # another refusal by RabbitMQ
            raise BrokerUnreachable(f"RabbitMQ refused {what}: {text}") from None
        raise BrokerUnreachable(f"could not send {what}: {type(exc).__name__}: {text}") from None


def _reply_to(app: Any) -> str | None:
    """Where `rpc://` results of a workflow go: `app`'s reply queue, declared now."""
    return declare_reply_queue(app) if uses_rpc(app) else None


def collect_within(results: list[Any], timeout: float | None,
                   what: str) -> Iterator[tuple[str, str, Any]]:
    """(task id, status, value) of `results` as they come (collect_results), a lost broker
    or backend as BrokerUnreachable; Celery's TimeoutError at the deadline."""
    with backend_errors(what):
        yield from collect_results(results, timeout)


def _within(timeout: float | None) -> str:
    return "in time" if timeout is None else f"within {timeout:g} s"


def _outcome(result: Any, timeout: float | None) -> tuple[str, Any] | None:
    """(status, value) of a Celery result, or None if none came within `timeout`."""
    try:
        value = wait_for(result, timeout, 0.05)
    except CeleryTimeoutError:
        return None
    return str(result.state), value


# -- chain --------------------------------------------------------------------------------


class ChainResult(Generic[R_co]):
    """A chain sent: `get()` waits for the last step's result."""

    def __init__(self, steps: list[tuple[str, str]], app: Any) -> None:
        self.steps, self.app = steps, app
        self._results = {task_id: app.AsyncResult(task_id) for _, task_id in steps}

    @property
    def id(self) -> str:
        """The last step's task id (its result is the chain's)."""
        return self.steps[-1][1]

    @property
    def ids(self) -> list[str]:
        """Every step's task id, in order."""
        return [task_id for _, task_id in self.steps]

    def get(self, timeout: float | None = 60.0) -> R_co:
        """The last step's result; a failed step's error naming the step (its number,
        contract and task id): TaskFailed, or ContractMismatch / ContractViolation;
        TaskTimeout if no outcome came within `timeout` seconds (None: forever)."""
        name, last = self.steps[-1]
        try:  # every step's outcome as it comes: a failed step ends the wait at once
            for task_id, status, value in collect_within(list(self._results.values()),
                                                         timeout, "a chain's results"):
                if status != states.SUCCESS:
                    raise self._failure(value)
                if task_id == last:
                    result: R_co = value
                    return result
        except CeleryTimeoutError:
            pass
        raise TaskTimeout(f"no result for chain step {len(self.steps)} of {len(self.steps)}, "
                          f"{name}[{last}], {_within(timeout)}")

    def _failure(self, value: Any) -> CeleryTasksError:
        """The error of the first step that failed: a failed step stores its error under
        its own id and every later step's (Celery's chain propagation)."""
        count = len(self.steps)
        for number, (name, task_id) in enumerate(self.steps, 1):
            outcome = _outcome(self._results[task_id], STEP_OUTCOME_WAIT)
            if outcome is not None and outcome[0] != states.SUCCESS:
                return remote_error(f"chain step {number} of {count}, {name}[{task_id}],",
                                    outcome[1])
        name, task_id = self.steps[-1]
        return remote_error(f"chain step {count} of {count}, {name}[{task_id}],", value)


class Chain(Generic[R_co]):
    """Steps run one after another, each on its own contract's workers; each step's result
    is the first argument of the next (unless it is `.si()`)."""

    def __init__(self, steps: Sequence[_Signature]) -> None:
        if not steps:
            raise BadArguments("a chain needs at least one step")
        for number, step in enumerate(steps, 1):
            if number == 1 and isinstance(step, Step):
                raise BadArguments(f"chain step 1, {step!r}: the first step has no step "
                                   "before it, so it needs every argument")
            if number > 1 and not isinstance(step, (Step, Fixed)):
                raise BadArguments(
                    f"chain step {number}, {step!r}: it has every argument already, and the "
                    "result of the step before would be one more: leave out its first "
                    "argument, or use .si() to ignore that result")
        self.steps = list(steps)

    def delay(self) -> ChainResult[R_co]:
        return self.apply_async()

    def apply_async(self) -> ChainResult[R_co]:
        """Publish the first step, carrying the rest (each with its own routing)."""
        app = self.steps[0].task.app
        with _sending(f"a chain of {len(self.steps)} steps"):
            _declare_queues(self.steps)
            reply_to = _reply_to(app)
            sigs = [step.celery_signature(reply_to) for step in self.steps]
            last = (celery.chain(*sigs) if len(sigs) > 1 else sigs[0]).apply_async()
        ids: list[str] = []
        while last is not None:
            ids.append(str(last.id))
            last = last.parent
        names = [step.name for step in self.steps]
        return ChainResult(list(zip(names, reversed(ids), strict=True)), app)


_AnyStep = Step[Any, Any] | Fixed[Any]


@overload
def chain(s1: Call[A], /) -> Chain[A]: ...
@overload
def chain(s1: Call[A], s2: Step[A, B] | Fixed[B], /) -> Chain[B]: ...
@overload
def chain(s1: Call[A], s2: Step[A, B] | Fixed[B], s3: Step[B, C] | Fixed[C], /) -> Chain[C]: ...
@overload
def chain(s1: Call[A], s2: Step[A, B] | Fixed[B], s3: Step[B, C] | Fixed[C],
          s4: Step[C, D] | Fixed[D], /) -> Chain[D]: ...
@overload
def chain(s1: Call[A], s2: Step[A, B] | Fixed[B], s3: Step[B, C] | Fixed[C],
          s4: Step[C, D] | Fixed[D], s5: Step[D, E] | Fixed[E], /) -> Chain[E]: ...
@overload
def chain(s1: Call[A], s2: Step[A, B] | Fixed[B], s3: Step[B, C] | Fixed[C],
          s4: Step[C, D] | Fixed[D], s5: Step[D, E] | Fixed[E], s6: Step[E, R] | Fixed[R],
          /) -> Chain[R]: ...
@overload
def chain(s1: Call[Any], s2: _AnyStep, s3: _AnyStep, s4: _AnyStep, s5: _AnyStep,
          s6: _AnyStep, s7: _AnyStep, /, *more: _AnyStep) -> Chain[Any]: ...
def chain(*steps: Any) -> Any:
    """Celery's `chain(a.s(...), b.s(...), ...)`, typed: mypy checks that each step's
    result fits the next step's first parameter (up to six steps; from seven on, mypy
    checks only the kinds of steps, and each step's worker checks what it receives)."""
    return Chain(steps)


# -- group --------------------------------------------------------------------------------


class GroupFailed(TaskFailed):
    """Some members of a group failed; `results` holds every member's result in order,
    the error of a failed one in its place."""

    def __init__(self, message: str, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results


class GroupResult(Generic[R_co]):
    """A group sent: `get()` waits for every member's result."""

    def __init__(self, members: list[tuple[str, str]], app: Any,
                 label: str = "group member") -> None:
        self.members, self.app, self.label = members, app, label
        self._outcomes: dict[str, tuple[str, Any]] = {}  # (status, value) by task id

    @property
    def ids(self) -> list[str]:
        return [task_id for _, task_id in self.members]

    @overload
    def get(self, timeout: float | None = ..., propagate: Literal[True] = ...) -> list[R_co]: ...
    @overload
    def get(self, timeout: float | None = ..., *,
            propagate: Literal[False]) -> list[R_co | CeleryTasksError]: ...
    def get(self, timeout: float | None = 60.0, propagate: bool = True) -> list[Any]:
        """Every member's result, in order. A failed member raises GroupFailed (with every
        other result in its `results`), or with `propagate=False` stands in the list as its
        error (TaskFailed, ContractMismatch...). TaskTimeout if a member has no outcome
        within `timeout` seconds (None: forever)."""
        outcomes = self._outcomes
        waiting = [self.app.AsyncResult(task_id) for _, task_id in self.members
                   if task_id not in outcomes]
        try:
            for task_id, status, value in collect_within(waiting, timeout,
                                                         "a group's results"):
                outcomes[task_id] = (status, value)
        except CeleryTimeoutError:
            missing = len(self.members) - len(outcomes)
            raise TaskTimeout(f"{missing} of {len(self.members)} group members gave no "
                              f"result {_within(timeout)}") from None
        values: list[Any] = []
        failed: list[CeleryTasksError] = []
        for number, (name, task_id) in enumerate(self.members, 1):
            status, value = outcomes[task_id]
            if status != states.SUCCESS:
                value = remote_error(f"{self.label} {number} of {len(self.members)}, "
                                     f"{name}[{task_id}],", value)
                failed.append(value)
            values.append(value)
        if failed and propagate:
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            error = GroupFailed(f"{len(failed)} of {len(values)} group members failed: "
                                + "; ".join(map(str, failed[:3])) + more, values)
            error.exit_code = failed[0].exit_code  # a contract error keeps its own
            raise error
        return values


class Group(Generic[R_co]):
    """Complete calls run in parallel, each on its own contract's workers."""

    def __init__(self, calls: Iterable[_Signature]) -> None:
        self.calls = list(calls)
        for number, call in enumerate(self.calls, 1):
            if not isinstance(call, Call):
                raise BadArguments(f"group member {number}, {call!r}: a group member needs "
                                   "every argument (no step runs before it)")

    def delay(self) -> GroupResult[R_co]:
        return self.apply_async()

    def apply_async(self, timeout: float | None = 60.0) -> GroupResult[R_co]:
        """Publish every member: on RabbitMQ by the batch path (batched confirms, one
        stream per contract), elsewhere by Celery's group. Returns once every member is
        confirmed by RabbitMQ; BrokerUnreachable if some are not within `timeout` seconds
        (None: no limit)."""
        if not self.calls:
            return GroupResult([], None)
        with tracing.workflow(f"send group of {len(self.calls)}"):  # one trace, if traced
            return self._send(timeout)

    def _send(self, timeout: float | None) -> GroupResult[R_co]:
        app = self.calls[0].task.app
        if not supports_batch_path(app):
            with _sending(f"a group of {len(self.calls)}"):
                _declare_queues(self.calls)
                reply_to = _reply_to(app)
                sent = celery.group([c.celery_signature(reply_to)
                                     for c in self.calls]).apply_async()
            return GroupResult([(c.name, str(r.id)) for c, r in
                                zip(self.calls, sent.results, strict=True)], app)
        with _sending(f"a group of {len(self.calls)}"):
            _declare_queues(self.calls)
            reply_to = _reply_to(app)
        ids: list[str] = [""] * len(self.calls)
        by_task: dict[str, list[int]] = {}
        for index, call in enumerate(self.calls):
            by_task.setdefault(call.name, []).append(index)
        for done, indices in enumerate(by_task.values()):
            task = self.calls[indices[0]].task
            sent = send_stream(task, ((self.calls[i].args, self.calls[i].kwargs)
                                      for i in indices),
                               timeout, _unexpected, checked=True, wait=False, buffered=True,
                               reply_to=reply_to)
            unsent = len(indices) - sent.sent + len(sent.unconfirmed_ids)
            if unsent:
                before = sum(len(i) for i in list(by_task.values())[:done])
                raise BrokerUnreachable(
                    f"RabbitMQ did not confirm {unsent} of {len(indices)} {task.name} group "
                    f"members {_within(timeout)} ({before + len(indices) - unsent} other "
                    "members were sent and may run)")
            for index, task_id in zip(indices, sent.pending_ids, strict=True):
                ids[index] = task_id
        return GroupResult([(c.name, task_id) for c, task_id in zip(self.calls, ids,
                                                                    strict=True)], app)


def _unexpected(index: int, task_id: str, status: str, value: Any) -> None:
    """A stream without waiting settles nothing."""


@overload
def group(calls: Iterable[Call[R]], /) -> Group[R]: ...
@overload
def group(*calls: Call[R]) -> Group[R]: ...
def group(*calls: Any) -> Any:
    """Celery's `group(a.s(...), b.s(...))` or `group(generator)`: complete calls, run in
    parallel; `.delay().get()` is the list of their results, in order."""
    if len(calls) == 1 and not isinstance(calls[0], _Signature):
        return Group(calls[0])
    return Group(calls)


# -- chord --------------------------------------------------------------------------------


class ChordResult(Generic[R_co]):
    """A chord sent: `get()` waits for the body's result."""

    def __init__(self, header: GroupResult[Any], body: tuple[str, str], app: Any) -> None:
        self.header, self.body, self.app = header, body, app
        self._result = app.AsyncResult(body[1])

    @property
    def id(self) -> str:
        return self.body[1]

    def get(self, timeout: float | None = 60.0) -> R_co:
        """The body's result; if a header member failed, its error, naming it (the body
        did not run); the body's own error; TaskTimeout."""
        name, task_id = self.body
        outcome = _outcome(self._result, timeout)
        if outcome is None:
            raise TaskTimeout(f"no result for chord body {name}[{task_id}] {_within(timeout)}")
        status, value = outcome
        if status == states.SUCCESS:
            result: R_co = value
            return result
        try:
            members = self.header.get(STEP_OUTCOME_WAIT, propagate=False)
        except TaskTimeout:
            members = []
        for member in members:
            if isinstance(member, CeleryTasksError):
                raise type(member)(f"chord body {name}[{task_id}] did not run: {member}")
        raise remote_error(f"chord body {name}[{task_id}]", value)


class Chord(Generic[R_co]):
    """A group (the header) whose list of results is the first argument of the body."""

    def __init__(self, header: Iterable[_Signature], body: _Signature) -> None:
        self.header = Group[Any](header)
        if not isinstance(body, (Step, Fixed)):
            raise BadArguments(f"chord body {body!r}: it has every argument already, and the "
                               "list of the header's results would be one more: leave out its "
                               "first argument, or use .si() to ignore that list")
        self.body = body

    def delay(self) -> ChordResult[R_co]:
        return self.apply_async()

    def apply_async(self) -> ChordResult[R_co]:
        """Refused before publishing with `rpc://` (ConfigError); else Celery's chord."""
        app = self.body.task.app
        backend = str(app.conf.result_backend)
        if uses_rpc(app) or backend.startswith("disabled"):
            raise ConfigError(
                f"a chord needs a result backend that counts its header's results, and "
                f"CELERY_RESULT_BACKEND is {backend.split('://')[0]}://, which cannot: set it "
                "to redis://HOST:6379/0 or db+postgresql+psycopg://USER@HOST/DB (nothing was "
                "sent)")
        with _sending(f"a chord of {len(self.header.calls)}"), tracing.workflow(
                f"send chord of {len(self.header.calls)}"):
            _declare_queues([*self.header.calls, self.body])
            sent = celery.chord([c.celery_signature() for c in self.header.calls],
                                self.body.celery_signature()).apply_async()
        header_ids = [str(r.id) for r in sent.parent.results] if sent.parent else []
        header = GroupResult[Any]([(c.name, task_id) for c, task_id in
                              zip(self.header.calls, header_ids, strict=True)], app,
                                            "header member")
        return ChordResult(header, (self.body.name, str(sent.id)), app)


class ChordHeader(Generic[R_co]):
    """`chord(header)`: called with a body, publishes the chord (Celery's call style)."""

    def __init__(self, header: Iterable[_Signature]) -> None:
        self.header = list(header)

    def __call__(self, body: Step[list[R_co], R] | Fixed[R]) -> ChordResult[R]:
        return Chord[R](self.header, body).apply_async()


@overload
def chord(header: Group[A] | Iterable[Call[A]], /) -> ChordHeader[A]: ...
@overload
def chord(header: Group[A] | Iterable[Call[A]],
          body: Step[list[A], B] | Fixed[B], /) -> Chord[B]: ...
def chord(header: Any, body: Any = None) -> Any:
    """Celery's `chord(header, body)` (or `chord(header)(body)`, which publishes at once):
    the body gets the list of the header's results. Needs Redis or PostgreSQL results."""
    calls: list[_Signature] = header.calls if isinstance(header, Group) else list(header)
    if body is None:
        return ChordHeader(calls)
    return Chord(calls, body)
