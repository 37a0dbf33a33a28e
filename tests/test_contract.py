"""Contracts: calls are checked against the stub's signature; implementations must match it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from celery import Task

from celery_tasks.core import contract as contract_module
from celery_tasks.core.contract import (
    Contract,
    check_call,
    check_implementation,
    check_result,
    describe,
)
from celery_tasks.core.errors import (
    BadArguments,
    ContractNotImplemented,
    ContractViolation,
    ImplementationError,
)
from celery_tasks.tasks import CONTRACTS, DivideTask, MagicCeleryTask, SleepEchoTask


def test_the_four_contracts_have_unique_names_and_typed_signatures() -> None:
    described = {name: describe(cls) for name, cls in CONTRACTS.items()}
    assert all(text.startswith(f"{name}(") for name, text in described.items())
    assert {name: described[name] for name in list(CONTRACTS)[:4]} == {
        "unique_magic_task": "unique_magic_task(arg1: int, arg2: int, arg3: int) -> int",
        "count_primes": "count_primes(limit: int) -> int",
        "sleep_echo": "sleep_echo(seconds: float, payload: str) -> str",
        "divide": "divide(a: float, b: float) -> float",
    }
    assert all(issubclass(cls, Task) for cls in CONTRACTS.values())


def test_stub_run_raises_instead_of_pretending() -> None:
    with pytest.raises(ContractNotImplemented, match="contract stub"):
        MagicCeleryTask().run(1, 2, 3)


def test_a_good_call_passes_unchanged() -> None:
    assert check_call(MagicCeleryTask, [1, 2], {"arg3": 3}) == ([1, 2, 3], {})


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2), {}, "missing a required argument: 'arg3'"),
        ((1, 2, 3, 4), {}, "too many positional arguments"),
        ((1, 2, 3), {"arg4": 1}, "unexpected keyword argument 'arg4'"),
        ((1, 2, "3"), {}, "argument arg3 must be int, got str '3'"),
        ((1, True, 3), {}, "argument arg2 must be int, got bool True"),
        ((1.5, 2, 3), {}, "argument arg1 must be int, got float 1.5"),
    ],
)
def test_a_bad_call_is_refused_with_the_signature(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(BadArguments) as info:
        check_call(MagicCeleryTask, args, kwargs)
    assert str(info.value).startswith("unique_magic_task(arg1: int, arg2: int, arg3: int) -> int: ")
    assert message in str(info.value)


@pytest.mark.parametrize("call", [
    (1, 2, 3), (1, 2, True), (1, 2, 3.0), (1, 2, "3"), (1, 2), (1, 2, 3, 4), (0, -5, 2**70),
    (1, 1, 10**5000),
])
def test_the_plain_call_shortcut_agrees_with_the_full_check(call: tuple) -> None:
    """check_call skips pydantic for plain int/float/str/bool calls: same answer either way."""
    _assert_same_verdict(MagicCeleryTask, call)
    assert contract_module._check_simple(MagicCeleryTask, (1, 2, 3), 2**20) == [1, 2, 3]  # used


@pytest.mark.parametrize("call", [
    (1, 2), (1.5, 2), (1, True), (float("nan"), 1), (float("inf"), 1), (2**60, 1), ("1", 2),
])
def test_the_shortcut_agrees_for_floats(call: tuple) -> None:
    _assert_same_verdict(DivideTask, call)


@pytest.mark.parametrize("call", [(0.5, "x"), (1, "é" * 10), (0.5, "x" * 2_000_000), (0.5, 3),
                                  (0.5, "a\udc80"), (0.5, "\ud83d\ude00"), (0.5, "😀")])
@pytest.mark.parametrize("wire", [False, True])
def test_the_shortcut_agrees_for_text(call: tuple, wire: bool) -> None:
    _assert_same_verdict(SleepEchoTask, call, wire)


def _assert_same_verdict(cls: type, call: tuple, wire: bool = False) -> None:
    def verdict(args: Any) -> Any:
        try:
            return check_call(cls, args, {}, wire=wire)
        except BadArguments as exc:
            return str(exc)

    shortcut = verdict(call)
    contract_module._SIMPLE[cls] = None  # disable the shortcut for this contract
    try:
        full = verdict(call)
    finally:
        contract_module._SIMPLE.pop(cls)
    assert repr(shortcut) == repr(full)


def test_an_int_is_accepted_where_a_float_is_expected() -> None:
    assert check_call(DivideTask, [1, 2], {}) == ([1.0, 2.0], {})


def test_text_is_converted_by_the_annotations() -> None:
    assert check_call(SleepEchoTask, ["0.5", "42"], {}, from_text=True) == ([0.5, "42"], {})
    with pytest.raises(BadArguments, match="argument arg1 must be int"):
        check_call(MagicCeleryTask, ["1.5", "2", "3"], {}, from_text=True)


class _DatedTask(Contract):
    name = "test_dated"

    def run(self, day: date, pair: tuple[int, int], count: int) -> str:
        raise NotImplementedError


def test_values_the_message_carries_as_json_reach_run_as_python_objects() -> None:
    """JSON turns a date into text and a tuple into a list; the worker checks them as JSON."""
    sent = check_call(_DatedTask, [date(2026, 11, 25), (1, 2), 3], {})
    assert sent == (["2026-11-25", [1, 2], 3], {})
    assert check_call(_DatedTask, *sent, wire=True) == ([date(2026, 11, 25), (1, 2), 3], {})
    with pytest.raises(BadArguments, match="argument count must be int"):
        check_call(_DatedTask, ["2026-11-25", [1, 2], "3"], {}, wire=True)
    with pytest.raises(BadArguments, match="argument day must be date"):
        check_call(_DatedTask, ["not a date", [1, 2], 3], {}, wire=True)


def test_a_contract_needs_a_name_and_a_run() -> None:
    with pytest.raises(TypeError, match="needs a non-empty string 'name'"):
        type("Nameless", (Contract,), {"run": lambda self: None})
    with pytest.raises(TypeError, match="needs a typed run"):
        type("Runless", (Contract,), {"name": "runless"})


class GoodMagic(MagicCeleryTask):
    def run(self, arg1: int, arg2: int, arg3: int) -> int:
        return arg1 + arg2 + arg3


def test_a_faithful_implementation_is_accepted() -> None:
    check_implementation(GoodMagic)
    assert GoodMagic.contract is MagicCeleryTask


def test_the_stub_itself_is_not_an_implementation() -> None:
    with pytest.raises(ImplementationError, match="is the contract stub"):
        check_implementation(MagicCeleryTask)


def test_a_class_outside_the_contracts_is_refused() -> None:
    with pytest.raises(ImplementationError, match="does not subclass"):
        check_implementation(Task)


@pytest.mark.parametrize(
    "run",
    [
        lambda self, arg1, arg2, arg3: 0,  # no annotations
        lambda self, a, b, c: 0,  # renamed parameters
    ],
)
def test_a_drifted_signature_is_refused(run: object) -> None:
    drifted = type("Drifted", (MagicCeleryTask,), {"run": run})
    with pytest.raises(ImplementationError, match="differs from the contract"):
        check_implementation(drifted)


def test_a_different_return_annotation_is_refused() -> None:
    class ReturnsText(MagicCeleryTask):
        def run(self, arg1: int, arg2: int, arg3: int) -> str:  # type: ignore[override]
            return str(arg1 + arg2 + arg3)

    with pytest.raises(ImplementationError, match=r"-> str differs"):
        check_implementation(ReturnsText)


def test_an_extra_defaulted_parameter_is_refused() -> None:
    class Extra(MagicCeleryTask):
        def run(self, arg1: int, arg2: int, arg3: int, arg4: int = 0) -> int:
            return 0

    with pytest.raises(ImplementationError, match="differs from the contract"):
        check_implementation(Extra)


def test_arguments_over_the_message_size_limit_are_refused_naming_both_sizes() -> None:
    limit = 2**20 - contract_module.HEADER_ROOM
    check_call(SleepEchoTask, [0.1, "x" * (limit - 100)], {}, limit=limit)  # it fits
    with pytest.raises(BadArguments) as info:
        check_call(SleepEchoTask, [0.1, "x" * limit], {}, limit=limit)
    assert str(info.value).startswith("sleep_echo(seconds: float, payload: str) -> str: the "
                                      f"arguments take {limit + 13:,} bytes as JSON, over the "
                                      f"{limit:,} bytes a message holds")
    assert "CELERY_TASKS_MAX_MESSAGE_SIZE, 1 MiB" in str(info.value)


def test_the_default_limit_is_rabbitmq_4s_16_mib() -> None:
    with pytest.raises(BadArguments, match="over the 16,711,680 bytes"):
        check_call(SleepEchoTask, [0.1, "x" * 16 * 2**20], {})


def test_a_result_over_the_limit_is_a_contract_violation_naming_task_size_and_limit() -> None:
    limit = 2**20
    assert check_result(SleepEchoTask, "y" * 1000, limit) == "y" * 1000
    with pytest.raises(ContractViolation) as info:
        check_result(SleepEchoTask, "y" * limit, limit)
    assert str(info.value).startswith(f"sleep_echo: its result would take {limit + 2:,} bytes "
                                      f"as JSON, over the {limit:,} bytes a message holds")


def test_contracts_derive_from_the_classes_of_tasks_py() -> None:
    """A new contract is one class: CONTRACTS finds every one, in definition order."""
    assert list(CONTRACTS)[:4] == ["unique_magic_task", "count_primes", "sleep_echo", "divide"]
    assert all(contract_module.contracts_in("celery_tasks.tasks")[name] is cls
               for name, cls in CONTRACTS.items())


def test_two_contracts_with_one_task_name_in_a_module_are_refused() -> None:
    for qualname in ("First", "Second"):
        type(qualname, (Contract,), {"name": "twice", "run": lambda self: None,
                                     "__module__": "tests.two_of_a_name"})
    with pytest.raises(TypeError, match="two contracts named 'twice': First and Second"):
        contract_module.contracts_in("tests.two_of_a_name")


def test_implementations_derive_from_the_classes_of_a_module() -> None:
    class Magic(MagicCeleryTask):
        def run(self, arg1: int, arg2: int, arg3: int) -> int:
            return 0

    found = contract_module.implementations_in({"Magic": Magic, "stub": DivideTask, "n": 1},
                                               __name__)
    assert found == {"unique_magic_task": Magic}  # the stub implements nothing
