"""Workflow signatures without a broker: what `.s()` makes, what a chain, a group and a
chord accept, and the chord's backend rule (checked before anything is published)."""

from __future__ import annotations

import pytest

from celery_tasks.canvas import Call, Fixed, Step, chain, chord, group
from celery_tasks.core.errors import BadArguments, ConfigError
from celery_tasks.remote import remote
from celery_tasks.tasks import CountPrimesTask, DivideTask, MagicCeleryTask, SumNumbersTask

magic, primes = remote(MagicCeleryTask.run), remote(CountPrimesTask.run)
divide, total = remote(DivideTask.run), remote(SumNumbersTask.run)


def test_s_makes_a_step_when_only_the_first_argument_is_missing() -> None:
    assert type(magic.s(2, 3)) is Step and magic.s(2, 3).args == [2, 3]
    assert type(primes.s()) is Step
    assert type(magic.s(1, 2, 3)) is Call
    assert type(magic.s(arg1=1, arg2=2, arg3=3)) is Call
    assert type(divide.si(1.0, 2.0)) is Fixed


def test_each_argument_is_checked_when_the_signature_is_made() -> None:
    with pytest.raises(BadArguments, match="argument arg3 must be int, got str '3'"):
        magic.s(1, 2, "3")  # type: ignore[call-overload]
    with pytest.raises(BadArguments, match="argument b must be float"):
        divide.s("x")  # type: ignore[call-overload]
    with pytest.raises(BadArguments, match="missing a required argument"):
        divide.si(1.0)  # type: ignore[call-arg]


def test_the_routing_of_a_signature_is_its_contracts() -> None:
    options = primes.s().celery_signature("reply-queue").options
    assert (options["exchange"], options["routing_key"]) == ("count_primes", "count_primes")
    assert options["reply_to"] == "reply-queue" and options["declare"] == []
    assert {"contract", "contract_fingerprint", "contract_commit"} <= set(options["headers"])


@pytest.mark.parametrize(("make", "says"), [
    (lambda: chain(primes.s(), magic.s(1, 2)), "chain step 1, count_primes.s()"),  # type: ignore[call-overload]
    (lambda: chain(magic.s(1, 2, 3), magic.s(1, 2, 3)), "chain step 2"),  # type: ignore[call-overload]
    (lambda: group(primes.s()), "group member 1"),  # type: ignore[call-overload]
    (lambda: chord([magic.s(1, 2, 3)], magic.s(1, 2, 3)), "chord body"),  # type: ignore[call-overload]
    (lambda: chain(), "at least one step"),  # type: ignore[call-overload]
])
def test_a_misplaced_signature_is_refused(make: object, says: str) -> None:
    with pytest.raises(BadArguments, match=says):
        make()  # type: ignore[operator]


def test_a_chord_on_rpc_is_refused_naming_the_setting() -> None:
    assert str(total.task.app.conf.result_backend).startswith("rpc")
    with pytest.raises(ConfigError, match="CELERY_RESULT_BACKEND is rpc://, which cannot"):
        chord([magic.s(1, 2, 3)], total.s()).delay()
