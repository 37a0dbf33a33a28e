"""Tracing without a broker: when it is on, what a send's span and headers hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from celery_tasks.core.errors import ContractMismatch, ContractViolation, outcome_of

#: A process of its own for each case: tracing is decided once per process.
APPLICATION = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the application's own set-up (a web app's)

from celery_tasks.core import tracing
from celery_tasks.tasks import DivideTask
from celery_tasks.utils import create_worker_from

_, task = create_worker_from(DivideTask)
with tracing.sending(tracing.tracer(), task) as sending:
    sending.sent("id-1", "FAILURE", ZeroDivisionError("division by zero"))
(span,) = exporter.get_finished_spans()
print(json.dumps({"headers": sending.headers, "name": span.name,
                  "trace_id": format(span.context.trace_id, "032x"),
                  "attributes": dict(span.attributes)}))
"""


ROOT = Path(__file__).resolve().parents[1]
#: This repository's root as the package `celery_tasks`, as conftest.py loads it.
LOADER = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    "celery_tasks", {str(ROOT / "__init__.py")!r}, submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules["celery_tasks"] = module
spec.loader.exec_module(module)
"""


def run(source: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LOADER + source], capture_output=True,
                          text=True, timeout=60, cwd=ROOT,
                          env={"CELERY_TASKS_ENV_FILE": "", "PATH": "/usr/bin:/bin", **env})


def test_an_applications_own_tracer_provider_gets_the_spans_and_the_context_travels() -> None:
    out = run(APPLICATION, {})
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    version, trace_id, _, flags = sent["headers"]["traceparent"].split("-")
    assert (version, trace_id) == ("00", sent["trace_id"]) and int(flags, 16) & 1  # sampled
    assert sent["name"] == "send divide"
    assert sent["attributes"]["messaging.message.id"] == "id-1"
    assert sent["attributes"]["celery_tasks.outcome"] == "failure"
    assert len(sent["attributes"]["celery_tasks.contract.fingerprint"]) == 16


def test_a_traces_file_that_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "spans.jsonl"
    folder.mkdir()  # a folder, not a file
    out = run("from celery_tasks.core import tracing\ntracing.tracer()\n",
              {"CELERY_TASKS_TRACES_FILE": str(folder)})
    assert out.returncode == 1 and "ConfigError: CELERY_TASKS_TRACES_FILE names" in out.stderr


@pytest.mark.parametrize(("error", "outcome"), [
    (ContractMismatch("x"), "contract_mismatch"), (ContractViolation("x"), "contract_violation"),
    (SoftTimeLimitExceeded(), "timeout"), (TimeLimitExceeded(), "timeout"),
    (WorkerLostError(), "worker_lost"), (ZeroDivisionError(), "failure"),
    ("SoftTimeLimitExceeded", "timeout"), ("KeyError", "failure"),
])
def test_every_error_has_the_outcome_workers_and_producers_count(
    error: BaseException | str, outcome: str
) -> None:
    assert outcome_of(error) == outcome
