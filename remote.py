"""A typed producer API: a contract as a function that mypy checks.

    from celery_tasks.remote import remote
    from celery_tasks.tasks import MagicCeleryTask

    magic = remote(MagicCeleryTask.run)
    total: int = magic(1, 2, 3)            # sends, waits, returns 6
    pending = magic.send(1, 2, 3)          # sends; pending.get() -> int later
    magic(1, 2, "3")                       # mypy: incompatible type "str"; expected "int"

Calls are also checked at run time before anything is published, like `delay()`. A call
that waits (`magic(1, 2, 3)`) takes the single-call path on RabbitMQ with `rpc://`: a
connection per thread, kept open (celery_tasks.publisher.single).

`magic.s(...)` and `magic.si(...)` are typed signatures for workflows (`chain`, `group`,
`chord`: celery_tasks.canvas). `Remote` keeps the contract's `run` as its type parameter,
so that mypy sees both its full signature (calls, `.si`) and its first parameter apart
from the rest (`.s` of a chain step, which the step before it completes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from celery.exceptions import TimeoutError as CeleryTimeoutError

from .core.contract import Contract
from .core.errors import TaskTimeout, remote_error
from .core.results import wait_for
from .publisher.single import call, supports_single_call_path

if TYPE_CHECKING:
    from .canvas import Call, Fixed, Step

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
A = TypeVar("A")
#: The contract's `run`, as mypy sees it: `def (self, arg1: int, ...) -> int`.
F = TypeVar("F", bound=Callable[..., Any])


class Pending(Generic[R]):
    """A task sent through `Remote.send`; `get()` waits for its typed result."""

    def __init__(self, result: Any, name: str, timeout: float | None) -> None:
        self.result, self.name, self.timeout = result, name, timeout

    @property
    def id(self) -> str:
        return str(self.result.id)

    def get(self, timeout: float | None = None) -> R:
        """The result; the task's error as TaskFailed (or a contract error); TaskTimeout."""
        wait = self.timeout if timeout is None else timeout
        try:
            value = wait_for(self.result, wait, 0.05)
        except CeleryTimeoutError:
            raise TaskTimeout(f"no result for {self.name}[{self.id}] within {wait} s") from None
        return _unwrap(self.name, self.id, self.result.state, value)


def _unwrap(name: str, task_id: str, status: str, value: Any) -> Any:
    """The value of a successful task; the task's error as TaskFailed (or a contract error)."""
    if status != "SUCCESS":
        raise remote_error(f"task {name}[{task_id}]", value)
    return value


class Remote(Generic[F]):
    """A contract bound to its own Celery app, callable with the contract's signature."""

    def __init__(self, contract: type[Contract], timeout: float | None) -> None:
        from .utils import create_worker_from  # imports the Celery settings

        _, self.task = create_worker_from(contract.contract)
        self.timeout = timeout

    def send(self: Remote[Callable[Concatenate[Any, P], R]], *args: P.args,
             **kwargs: P.kwargs) -> Pending[R]:
        """Publish one call (checked against the contract first) without waiting."""
        return Pending(self.task.apply_async(args, kwargs), self.task.name, self.timeout)

    def __call__(self: Remote[Callable[Concatenate[Any, P], R]], *args: P.args,
                 **kwargs: P.kwargs) -> R:
        """Publish one call and wait for its result (on RabbitMQ with `rpc://`, through the
        single-call path: celery_tasks.publisher.single)."""
        if not supports_single_call_path(self.task.app):
            return self.send(*args, **kwargs).get()
        task_id, status, value = call(self.task, args, kwargs, self.timeout)
        result: R = _unwrap(self.task.name, task_id, status, value)
        return result

    @overload
    def s(self: Remote[Callable[Concatenate[Any, A, Q], R]], *args: Q.args,
          **kwargs: Q.kwargs) -> Step[A, R]: ...

    @overload
    def s(self: Remote[Callable[Concatenate[Any, P], R]], *args: P.args,
          **kwargs: P.kwargs) -> Call[R]: ...

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature, as Celery's `.s()`: every argument but the first makes a chain
        step (`Step`), which the step before it completes with its result; every argument
        makes a complete call (`Call`). Checked against the contract now."""
        from .canvas import signature

        return signature(self.task, args, kwargs, immutable=False)

    def si(self: Remote[Callable[Concatenate[Any, P], R]], *args: P.args,
           **kwargs: P.kwargs) -> Fixed[R]:
        """A complete call that ignores the result of the step before it, as Celery's
        `.si()`. Checked against the contract now."""
        from .canvas import signature

        fixed: Fixed[R] = signature(self.task, args, kwargs, immutable=True)
        return fixed


def remote(run: F, *, timeout: float | None = 60.0) -> Remote[F]:
    """`remote(Contract.run)`: the contract as a typed function (see the module docstring)."""
    for cls in _contracts():
        if cls.__dict__.get("run") is run:
            return Remote(cls, timeout)
    raise TypeError(f"{run!r} is not the run() of a celery_tasks contract")


def _contracts() -> list[type[Contract]]:
    found, todo = [], list(Contract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found
