"""Fingerprints are stable; the compatibility rule lets only additive, optional change pass."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from celery_tasks.core.contract import Contract
from celery_tasks.core.fingerprint import describe_contract, fingerprint, incompatibility
from celery_tasks.tasks import CONTRACTS, DivideTask

ROOT = Path(__file__).resolve().parents[1]


def make(name: str, run: Any) -> type[Contract]:
    return type(f"C_{name}_{id(run)}", (Contract,), {"name": name, "run": run})


PRINTS = """
import importlib.util, json, sys
root = sys.argv[1]  # this repository, whatever its folder is called (see conftest.py)
spec = importlib.util.spec_from_file_location("celery_tasks", root + "/__init__.py",
                                              submodule_search_locations=[root])
sys.modules["celery_tasks"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from celery_tasks.core.fingerprint import describe_contract, fingerprint
from celery_tasks.tasks import CONTRACTS
print(json.dumps({n: fingerprint(describe_contract(c)) for n, c in CONTRACTS.items()}))
"""


def test_fingerprints_are_stable_across_processes_and_distinct() -> None:
    """Producer and worker compute them in different processes, with different hash seeds."""
    prints = {name: fingerprint(describe_contract(cls)) for name, cls in CONTRACTS.items()}
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", PRINTS, str(ROOT)], capture_output=True,
                             text=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == prints
    assert len(set(prints.values())) == len(CONTRACTS)
    assert all(len(p) == 16 for p in prints.values())


def test_the_same_contract_is_compatible_with_itself() -> None:
    d = describe_contract(DivideTask)
    assert incompatibility(d, copy.deepcopy(d)) is None


def base(self: Any, a: float, b: float) -> float:
    raise NotImplementedError


def added_optional(self: Any, a: float, b: float, digits: int = 3) -> float:
    raise NotImplementedError


def added_required(self: Any, a: float, b: float, digits: int) -> float:
    raise NotImplementedError


def retyped(self: Any, a: float, b: int) -> float:
    raise NotImplementedError


def renamed(self: Any, a: float, c: float) -> float:
    raise NotImplementedError


def other_return(self: Any, a: float, b: float) -> str:
    raise NotImplementedError


@pytest.mark.parametrize(
    ("producer", "worker", "reason"),
    [
        (base, added_optional, None),  # the worker learned an optional parameter first
        (added_optional, base, "parameter 'digits' is unknown to the worker"),
        (base, added_required, "the worker requires parameter 'digits'"),
        (base, retyped, "parameter 2 is b:"),
        (base, renamed, "parameter 2 is b:"),
        (base, other_return, "the return types differ"),
    ],
)
def test_the_compatibility_rule(producer: Any, worker: Any, reason: str | None) -> None:
    p = describe_contract(make("divide", producer))
    w = describe_contract(make("divide", worker))
    assert fingerprint(p) != fingerprint(w)  # every change shows, compatible or not
    verdict = incompatibility(p, w)
    if reason is None:
        assert verdict is None
    else:
        assert verdict is not None and reason in verdict
