"""Contract fingerprints, and the rule that says which contract changes stay compatible.

A contract's *description* is its name, its parameters (name, kind, default, annotation as
a JSON schema) and its return annotation (as a JSON schema); the *fingerprint* is a hash
of that description. Producers send both with every message; a worker compares them with
its own before running anything.

The compatibility rule, protobuf-like: a producer's contract P may call a worker's
contract W when they have the same name and return type, and P's parameters are, in
order, a prefix of W's with the same kinds, annotations and defaults; any parameter W adds
after them has a default. So a worker may learn a new optional parameter before its
producers do; anything else (a removed, renamed, retyped or reordered parameter, a new
required one, another return type) is a mismatch, and the call never runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

if TYPE_CHECKING:
    from .contract import Contract

Description = dict[str, Any]


@cache
def _schema(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return {}
    return TypeAdapter(annotation).json_schema()


def describe_contract(cls: type[Contract]) -> Description:
    """The canonical, JSON-ready description of a contract's signature."""
    from .contract import signature_of

    sig = signature_of(cls.contract)
    params = [
        {
            "name": p.name,
            "kind": p.kind.name,
            "default": None if p.default is p.empty else repr(p.default),
            "annotation": _schema(p.annotation),
        }
        for p in sig.parameters.values()
    ]
    return {"name": cls.contract.name, "params": params,
            "returns": _schema(sig.return_annotation)}


def fingerprint(description: Description) -> str:
    """A short, stable hash of a description (sha256 of its canonical JSON, 16 hex digits)."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def incompatibility(producer: Description, worker: Description) -> str | None:
    """Why a producer's contract cannot call a worker's, or None when it can."""
    if producer.get("name") != worker["name"]:
        return f"task names differ: {producer.get('name')!r} and {worker['name']!r}"
    if producer.get("returns") != worker["returns"]:
        return "the return types differ"
    sent, known = producer.get("params") or [], worker["params"]
    for index, param in enumerate(sent):
        if index >= len(known):
            return f"parameter {param.get('name')!r} is unknown to the worker"
        if param != known[index]:
            return (f"parameter {index + 1} is {_show(param)} for the producer but "
                    f"{_show(known[index])} for the worker")
    for param in known[len(sent):]:
        if param["default"] is None:
            return f"the worker requires parameter {param['name']!r}, which the producer lacks"
    return None


def _show(param: dict[str, Any]) -> str:
    default = f" = {param['default']}" if param.get("default") is not None else ""
    return f"{param.get('name')}: {json.dumps(param.get('annotation'), sort_keys=True)}{default}"
