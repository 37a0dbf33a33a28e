"""Remote errors keep their own exit codes when they reach the producer."""

from __future__ import annotations

import pytest

from celery_tasks.core.errors import (
    EXIT_CONTRACT_MISMATCH,
    EXIT_CONTRACT_VIOLATION,
    EXIT_TASK_FAILED,
    EXIT_UNKNOWN_TASK,
)
from producer.client import Outcome


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        ("ContractMismatch", EXIT_CONTRACT_MISMATCH),
        ("ContractViolation", EXIT_CONTRACT_VIOLATION),
        ("NotRegistered", EXIT_UNKNOWN_TASK),
        ("ZeroDivisionError", EXIT_TASK_FAILED),
    ],
)
def test_a_remote_error_maps_to_its_exit_code(error_type: str, code: int) -> None:
    outcome = Outcome("id-1", False, error_type=error_type, error_message="details")
    with pytest.raises(Exception) as info:
        outcome.unwrap("divide")
    assert getattr(info.value, "exit_code", None) == code
    assert str(info.value) == f"task divide[id-1] raised {error_type}: details"


def test_a_success_unwraps_to_its_result() -> None:
    assert Outcome("id-2", True, result=6).unwrap("unique_magic_task") == 6
