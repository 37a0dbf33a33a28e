"""`Contract`: the base of every task stub, and the checks that keep both ends honest.

A contract is a direct subclass of `Contract` with a unique `name` and a typed `run`
that raises `ContractNotImplemented`. The consumer subclasses it and implements `run`
with the very same signature; the producer calls `delay()` on the stub, and every call is
checked against that signature before anything is published.
"""

from __future__ import annotations

import inspect
import json
import math
import time
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, TypeGuard

from celery import Task
from pydantic import ConfigDict, TypeAdapter, ValidationError

from . import tracing
from .errors import (
    BadArguments,
    ContractMismatch,
    ContractNotImplemented,
    ContractViolation,
    ImplementationError,
    message_refused,
)
from .fingerprint import describe_contract, fingerprint, incompatibility
from .version import pinned_commit

_STRICT = ConfigDict(strict=True)
#: RabbitMQ's default delivery-acknowledgement timeout (30 minutes), in seconds: a channel
#: whose unacknowledged message outlives it is closed, so every time limit stays below it.
CONSUMER_TIMEOUT = 1800
#: RabbitMQ 4.x refuses messages over 16 MiB by default (its max_message_size; 3.x: 128
#: MiB); CELERY_TASKS_MAX_MESSAGE_SIZE says what the broker in use takes.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: The header that holds when a call was published, in seconds since the epoch: the
#: worker's queue wait (celery_tasks.worker.observe).
PUBLISHED_AT = "published_at"
#: Room kept in a message for its headers (the contract's, Celery's, argument reprs).
HEADER_ROOM = 64 * 1024


class Contract(Task):
    """Base class of task contracts; see the module docstring."""

    #: The stub class a task class fulfils (set for every subclass).
    contract: ClassVar[type[Contract]]

    #: Errors the contract declares transient: retried with exponential backoff and jitter
    #: (1 s, 2 s, 4 s, ... at most `retry_backoff_max`), up to `max_retries` times. Any
    #: other error fails the task at once.
    transient_errors: ClassVar[tuple[type[Exception], ...]] = ()
    max_retries = 3
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    #: Seconds before a task whose pool process died runs again (at most max_retries times).
    default_retry_delay = 1
    #: Time limits, in seconds: the task gets SoftTimeLimitExceeded at the first and is
    #: killed at the second; both stay below RabbitMQ's delivery-acknowledgement timeout.
    soft_time_limit: ClassVar[float] = 300
    time_limit: ClassVar[float] = 330
    #: How the worker settles a timed-out message: see request.py.
    Request = "celery_tasks.worker.request:ContractRequest"
    #: Contract errors are expected answers, not crashes: the worker logs them in one line,
    #: without a traceback (the caller gets the error; the message is dead-lettered).
    throws = (ContractMismatch, ContractViolation)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if Contract in cls.__bases__:
            name = cls.__dict__.get("name")
            if not isinstance(name, str) or not name:
                raise TypeError(f"contract {cls.__qualname__} needs a non-empty string 'name'")
            if "run" not in cls.__dict__:
                raise TypeError(f"contract {cls.__qualname__} needs a typed run() method")
            _CONTRACTS.append(cls)
            cls.contract = cls
        if not 0 < cls.soft_time_limit <= cls.time_limit < CONSUMER_TIMEOUT:
            raise TypeError(
                f"{cls.__qualname__}: need 0 < soft_time_limit <= time_limit < "
                f"{CONSUMER_TIMEOUT} s (RabbitMQ's default consumer timeout), got "
                f"{cls.soft_time_limit} and {cls.time_limit}"
            )
        cls.autoretry_for = tuple(cls.transient_errors)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Check the call against the contract, then publish; a bad call publishes nothing.

        The message carries the contract's description, fingerprint and pinned commit, so
        the worker can refuse a call from an incompatible version (see fingerprint.py).
        """
        checked_args, checked_kwargs = check_call(type(self).contract, args or (), kwargs or {},
                                                  limit=payload_limit(self.app))
        options["headers"] = {**contract_headers(type(self)), **(options.get("headers") or {}),
                              PUBLISHED_AT: time.time()}
        tracing.tracer()  # set up once: Celery's publish is then traced, if asked for
        try:
            return super().apply_async(checked_args, checked_kwargs, **options)
        except Exception as exc:  # the broker's message size limit is lower than ours
            refused = message_refused(exc, f"a {self.name} call")
            if refused is not None:
                raise refused from None
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """On a worker: check the message against this worker's contract, run, check the result.

        A violation raises (`ContractMismatch`, `ContractViolation`): the caller gets the
        error and the message goes to the dead-letter queue; `run` never sees bad input.
        """
        if self.request.called_directly:
            return super().__call__(*args, **kwargs)
        cls = type(self).contract
        check_sender(cls, self.request)
        try:
            args_list, kwargs_dict = check_call(cls, args, kwargs, wire=True)
        except BadArguments as exc:
            raise ContractViolation(f"refused by the worker: {exc}") from None
        result = super().__call__(*args_list, **kwargs_dict)
        return check_result(cls, result, payload_limit(self.app))


#: Every contract defined so far, in definition order.
_CONTRACTS: list[type[Contract]] = []


def contracts_in(module: str) -> dict[str, type[Contract]]:
    """The contracts module `module` defines, by task name, in definition order: how
    `celery_tasks.tasks.CONTRACTS` comes about, so a new contract is one class. Two of
    them with one task name are a TypeError naming both."""
    found: dict[str, type[Contract]] = {}
    for cls in _CONTRACTS:
        if cls.__module__ == module:
            if cls.name in found and found[cls.name].__qualname__ != cls.__qualname__:
                raise TypeError(f"{module}: two contracts named {cls.name!r}: "
                                f"{found[cls.name].__qualname__} and {cls.__qualname__}")
            found[cls.name] = cls
    return found


def implementations_in(namespace: Mapping[str, object], module: str) -> dict[str, type[Contract]]:
    """The implementations `module` defines (its classes that implement a contract's
    `run`), by task name, in definition order: a new implementation is one class."""
    found: dict[str, type[Contract]] = {}
    for value in namespace.values():
        if (is_contract_class(value) and value.__module__ == module
                and value.run is not value.contract.run):
            if value.name in found:
                raise TypeError(f"{module}: two implementations of {value.name!r}: "
                                f"{found[value.name].__qualname__} and {value.__qualname__}")
            found[value.name] = value
    return found


def payload_limit(app: Any) -> int:
    """Bytes of JSON a call's arguments (or a result) may take in a message of `app`: its
    broker's message size limit less the room for headers."""
    size = app.conf.get("celery_tasks_max_message_size") or DEFAULT_MAX_MESSAGE_SIZE
    return int(size) - HEADER_ROOM


def _too_large(what: str, size: int, limit: int) -> str:
    return (f"{what} take {size:,} bytes as JSON, over the {limit:,} bytes a message holds "
            f"(CELERY_TASKS_MAX_MESSAGE_SIZE, {(limit + HEADER_ROOM) / 2**20:g} MiB, less "
            f"{HEADER_ROOM // 1024} KiB for headers): pass a reference (a URL, a key) instead")


def is_contract_class(cls: object) -> TypeGuard[type[Contract]]:
    """True for a contract stub or any subclass of one."""
    return isinstance(cls, type) and issubclass(cls, Contract) and hasattr(cls, "contract")


_SIGNATURES: dict[type[Contract], inspect.Signature] = {}


def signature_of(cls: type[Contract]) -> inspect.Signature:
    """The signature of `cls.run` without `self`, with string annotations resolved."""
    if cls not in _SIGNATURES:
        _SIGNATURES[cls] = _resolved_signature(cls)
    return _SIGNATURES[cls]


def _resolved_signature(cls: type[Contract]) -> inspect.Signature:
    run = cls.run
    hints = typing.get_type_hints(run)
    sig = inspect.signature(run)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in list(sig.parameters.values())[1:]
    ]
    return sig.replace(
        parameters=params, return_annotation=hints.get("return", sig.return_annotation)
    )


def rest_signature(cls: type[Contract]) -> inspect.Signature | None:
    """The signature of `cls.run` less its first parameter, which a chain step receives
    from the step before it; None if the first parameter cannot take it (there is none, or
    it is keyword-only or `*args`)."""
    params = list(signature_of(cls).parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return None
    return signature_of(cls).replace(parameters=params[1:])


def binds_partially(cls: type[Contract], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether a call with `args` and `kwargs` leaves exactly the first parameter to the
    step before it (see `rest_signature`)."""
    rest = rest_signature(cls)
    if rest is None:
        return False
    try:
        rest.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def describe(cls: type[Contract]) -> str:
    """`name(param: type, ...) -> type`, as users see a contract."""
    return f"{cls.contract.name}{signature_of(cls.contract)}"


@cache
def _adapter(annotation: Any, strict: bool) -> TypeAdapter[Any]:
    if annotation is inspect.Parameter.empty:
        annotation = Any
    return TypeAdapter(annotation, config=_STRICT if strict else None)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def _check_value(cls: type[Contract], param: inspect.Parameter, value: Any, strict: bool,
                 wire: bool = False) -> Any:
    """A value checked against its annotation: JSON-ready, or as Python objects if `wire`.

    `wire` values came out of a JSON message, so they are checked as JSON (strictly: a date
    may arrive as its ISO text, a tuple as a list, but an int never as text).
    """
    adapter = _adapter(param.annotation, strict)
    try:
        if wire:
            return adapter.validate_json(json.dumps(value))
        checked = adapter.validate_python(value)
    except (ValidationError, TypeError, ValueError):
        raise BadArguments(
            f"{describe(cls)}: argument {param.name} must be {_type_name(param.annotation)}, "
            f"got {type(value).__name__} {value!r}"
        ) from None
    return adapter.dump_python(checked, mode="json")


def _simple_types(cls: type[Contract]) -> tuple[type, ...] | None:
    """The parameter types, if every parameter is a plain positional int, float, str or bool."""
    if cls not in _SIMPLE:
        params = list(signature_of(cls).parameters.values())
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.annotation in (int, float, str, bool)
                     for p in params)
        _SIMPLE[cls] = tuple(p.annotation for p in params) if simple else None
    return _SIMPLE[cls]


_SIMPLE: dict[type[Contract], tuple[type, ...] | None] = {}


def _check_simple(cls: type[Contract], args: Sequence[Any], limit: int) -> list[Any] | None:
    """The strict check of a plain call, without pydantic: the hot path of every send.

    Returns None whenever it is not sure (another shape, a wrong type, NaN, long text);
    the full check then decides, with its error messages. Same results as the full check.
    """
    types = _simple_types(cls)
    if types is None or len(args) != len(types):
        return None
    checked: list[Any] = []
    text = 0
    for kind, value in zip(types, args, strict=True):
        plain = _plain_value(kind, value)
        if plain is _UNSURE:
            return None
        text += len(value) if kind is str else 0
        checked.append(plain)
    # JSON writes a character in 12 bytes at most (a surrogate pair, escaped).
    return checked if text * 12 + 64 * len(checked) < limit else None


_UNSURE = object()


def _plain_value(kind: type, value: Any) -> Any:
    """`value` as the full check would return it, or _UNSURE (then the full check runs)."""
    actual = type(value)
    if kind is str:
        plain = actual is str and (value.isascii() or _is_plain_unicode(value))
        return value if plain else _UNSURE
    if kind is float:
        if actual is float and math.isfinite(value):
            return value
        if actual is int and -(2**53) < value < 2**53:  # exact as a float
            return float(value)
        return _UNSURE
    if actual is kind and (kind is bool or -(2**63) <= value < 2**63):
        return value
    return _UNSURE


def _is_plain_unicode(text: str) -> bool:
    """No surrogates, which JSON and UTF-8 would not carry as they are."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_call(
    cls: type[Contract],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    from_text: bool = False,
    wire: bool = False,
    limit: int = DEFAULT_MAX_MESSAGE_SIZE - HEADER_ROOM,
    partial: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """Bind a call to the contract's signature and check every value against its annotation.

    Returns JSON-ready positional and keyword arguments. Values are checked strictly (an
    `int` parameter refuses `"1"` and `True`), unless `from_text`, where command-line text
    is converted by the annotation (`"1"` becomes `1`). With `wire` (a worker reading a
    message), values are checked as JSON and returned as Python objects for `run`. The
    arguments must fit in `limit` bytes of JSON (see `payload_limit`). With `partial`, the
    first parameter is left out: a chain step's, which the step before it gives (its
    value is checked by the worker when it arrives).
    Raises `BadArguments`.
    """
    if not from_text and not kwargs and not partial:
        simple = _check_simple(cls, args, limit)
        if simple is not None:
            return simple, {}
    sig = rest_signature(cls) if partial else signature_of(cls)
    if sig is None:
        raise BadArguments(f"{describe(cls)}: its first parameter cannot take the result of "
                           "the step before it")
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        what = " (less its first parameter, given by the step before)" if partial else ""
        raise BadArguments(f"{describe(cls)}{what}: {exc}") from None
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            bound.arguments[name] = tuple(
                _check_value(cls, param, v, not from_text, wire) for v in value)
        elif param.kind is param.VAR_KEYWORD:
            bound.arguments[name] = {
                k: _check_value(cls, param, v, not from_text, wire) for k, v in value.items()
            }
        else:
            bound.arguments[name] = _check_value(cls, param, value, not from_text, wire)
    checked = list(bound.args), dict(bound.kwargs)
    if wire:
        return checked
    try:
        size = len(json.dumps(checked, separators=(",", ":")))
    except ValueError as exc:  # an int too long for text (Python caps it at 4,300 digits)
        raise BadArguments(
            f"{describe(cls)}: the arguments cannot be sent as JSON: {exc}") from None
    if size > limit:
        raise BadArguments(f"{describe(cls)}: {_too_large('the arguments', size, limit)}")
    return checked


_HEADERS: dict[type[Contract], dict[str, str]] = {}


def contract_headers(cls: type[Contract]) -> dict[str, str]:
    """The headers every message of this contract carries (computed once per contract).

    The description travels as compact JSON text: an AMQP table of nested schemas would
    cost more to encode than the rest of the message.
    """
    contract = cls.contract
    if contract not in _HEADERS:
        description = describe_contract(contract)
        _HEADERS[contract] = {
            "contract": json.dumps(description, sort_keys=True, separators=(",", ":")),
            "contract_fingerprint": fingerprint(description),
            "contract_commit": pinned_commit(),
        }
    return _HEADERS[contract]


@cache
def _parse_description(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check_sender(cls: type[Contract], request: Any) -> None:
    """Raise `ContractMismatch` if the message's contract cannot call this worker's."""
    sent = request.get("contract")
    if not isinstance(sent, str):  # celery call, send_task, another language: args decide
        return
    mine_headers = contract_headers(cls)
    if request.get("contract_fingerprint") == mine_headers["contract_fingerprint"]:
        return  # the same contract: nothing to compare
    sent_description = _parse_description(sent)
    mine = describe_contract(cls)
    reason = ("the contract header is not valid JSON" if not isinstance(sent_description, dict)
              else incompatibility(sent_description, mine))
    if reason is not None:
        raise ContractMismatch(
            f"{cls.name}: the producer's contract {request.get('contract_fingerprint')} "
            f"(celery_tasks {request.get('contract_commit', 'unknown')}) cannot call the "
            f"worker's {fingerprint(mine)} (celery_tasks {pinned_commit()}): {reason}; "
            "update the older side's celery_tasks submodule"
        )


def check_result(cls: type[Contract], result: Any,
                 limit: int = DEFAULT_MAX_MESSAGE_SIZE - HEADER_ROOM) -> Any:
    """The result, JSON-ready, if it matches the return annotation and fits in `limit`
    bytes of JSON; else ContractViolation (a result the broker would refuse never leaves)."""
    annotation = signature_of(cls).return_annotation
    checked = result
    if annotation is not inspect.Signature.empty:
        adapter = _adapter(annotation, True)
        try:
            checked = adapter.dump_python(adapter.validate_python(result), mode="json")
        except ValidationError:
            raise ContractViolation(
                f"{describe(cls)}: the implementation returned {type(result).__name__} "
                f"{result!r:.80}, not {_type_name(annotation)}"
            ) from None
    size = _json_size(checked, limit)
    if size > limit:
        raise ContractViolation(f"{cls.name}: {_too_large('its result would', size, limit)}")
    return checked


def _json_size(value: Any, limit: int) -> int:
    """The bytes `value` takes as JSON, or a bound below `limit` when it surely fits."""
    if value is None or isinstance(value, (bool, int, float)):
        return 0
    if isinstance(value, str) and 12 * len(value) + 2 < limit:
        return 0  # JSON writes a character in 12 bytes at most (an escaped surrogate pair)
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError):  # not JSON at all: Celery's serializer says so later
        return 0


def check_implementation(cls: type) -> None:
    """Refuse a worker class that does not fulfil its contract: raises `ImplementationError`.

    It must subclass a contract stub, override `run`, and keep the stub's signature exactly
    (parameter names, kinds, defaults, annotations and the return annotation).
    """
    if not is_contract_class(cls):
        raise ImplementationError(f"{cls!r} does not subclass a celery_tasks contract")
    contract = cls.contract
    if cls.run is contract.run:
        raise ImplementationError(
            f"{contract.name}: {cls.__qualname__} is the contract stub, not an implementation; "
            "subclass it and implement run()"
        )
    expected, actual = signature_of(contract), signature_of(cls)
    if expected != actual:
        raise ImplementationError(
            f"{contract.name}: {cls.__qualname__}.run{actual} differs from the contract "
            f"run{expected}"
        )


def not_implemented(cls: type[Contract]) -> ContractNotImplemented:
    """The error a stub's `run` raises when something tries to execute the contract itself."""
    return ContractNotImplemented(
        f"{cls.name} is a contract stub: only a consumer implementation can run it"
    )
