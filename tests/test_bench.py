"""`make bench` runs end to end (tiny sizes, its own results folder); no time is asserted.
Its verdicts on issue 7's targets are checked on made-up rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import targets, verdict_line
from harness.processes import ROOT, clean_env


@pytest.mark.timeout(1200)  # every row's start-up, two RabbitMQ 4.3 clusters: minutes here
def test_make_bench_measures_every_row_and_writes_json_and_plot(tmp_path: Path) -> None:
    env = {**clean_env({}), "BENCH_RESULTS": str(tmp_path), "BENCH_N": "60",
           "BENCH_RTT": "5", "BENCH_RUNS": "1", "BENCH_MEMORY_NS": "50,200"}
    out = subprocess.run(["make", "--no-print-directory", "bench"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["raw py-amqp", "raw py-amqp echo worker, classic queue",
                     "raw py-amqp echo worker, quorum queue",
                     "raw py-amqp at-least-once echo worker, classic queue",
                     "raw py-amqp at-least-once echo worker, quorum queue",
                     "bare Celery (article settings)",
                     "bare Celery (reliable settings)", "Dramatiq (RabbitMQ, Redis results)",
                     "this project, classic queues", "this project"]
    assert all(row["p50_ms"] > 0 for row in report["rows"][1:5])  # the floors
    assert report["rows"][0]["publish_same_message_per_s"] > 0  # raw, with our messages
    ours = report["rows"][-1]
    assert ours["e2e_per_s"] > 0 and ours["publish_per_s"] > 0 and ours["p50_ms"] > 0
    assert ours["delay_p50_ms"] > 0  # Celery's delay().get() beside the single-call path
    assert {"ratio_e2e_vs_bare_reliable", "ratio_publish_vs_raw",
            "ratio_publish_vs_raw_same_message"} <= ours.keys()
    bare = report["rows"][6]  # a group of 2,000 here and in Celery with the same settings
    assert report["group"] == {"n": 2000, "bare_celery_per_s": bare["group_per_s"],
                               "ours_per_s": ours["group_per_s"],
                               "ratio": ours["group_per_s"] / bare["group_per_s"]}
    assert "Group of 2,000 (publish + every result): " in out.stdout
    assert [m["completed"] for m in report["memory"]] == [50, 200]  # every task came back
    assert [s["workers"] for s in report["scale"]] == [1, 2, 4]
    one, three = report["replication"]  # RabbitMQ 4.3: one node, then a three-node cluster
    assert one["e2e_per_s"] > 0 and three["e2e_per_s"] > 0 and three["p50_ms"] > 0
    assert three["ratio_e2e_vs_one_node"] == three["e2e_per_s"] / one["e2e_per_s"]
    assert "replication (RabbitMQ 4.3 in containers): e2e " in out.stdout
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "this project" in out.stdout  # the table
    assert [t["target"] for t in report["targets"]] == [
        "end to end vs bare Celery, same settings", "end to end vs Dramatiq",
        "batch publish vs raw py-amqp", "single call p50"]
    assert report["targets"][-1]["floor_ms"] == report["rows"][4]["p50_ms"]
    assert "target, single call p50: " in out.stdout


def rows(ours: dict[str, float], floor_ms: float) -> list[dict[str, object]]:
    """The rows `targets` reads: raw py-amqp publishes 10,000/s, bare Celery with the same
    settings runs 100 tasks/s end to end and Dramatiq 150; `ours` for this project."""
    return [{"name": "raw py-amqp", "publish_per_s": 10_000.0},
            {"name": "raw py-amqp at-least-once echo worker, quorum queue", "p50_ms": floor_ms},
            {"name": "bare Celery (reliable settings)", "e2e_per_s": 100.0},
            {"name": "Dramatiq (RabbitMQ, Redis results)", "e2e_per_s": 150.0},
            {"name": "this project", **ours}]


@pytest.mark.parametrize(("ours", "floor_ms", "met", "lines"), [
    pytest.param({"e2e_per_s": 250.0, "publish_per_s": 4_000.0, "p50_ms": 0.9}, 0.5,
                 [True, True, False, True], [
        "end to end vs bare Celery, same settings: 2.50x, target >= 2.00x: met",
        "end to end vs Dramatiq: 1.67x, target >= 1.00x: met",
        "batch publish vs raw py-amqp: 40%, target >= 50%: not met",
        "single call p50: 0.90 ms, target <= 1 ms: met"], id="some-met"),
    pytest.param({"e2e_per_s": 150.0, "publish_per_s": 5_000.0, "p50_ms": 1.0}, 1.0,
                 [False, True, True, True], [
        "end to end vs bare Celery, same settings: 1.50x, target >= 2.00x: not met",
        "end to end vs Dramatiq: 1.00x, target >= 1.00x: met",
        "batch publish vs raw py-amqp: 50%, target >= 50%: met",
        "single call p50: 1.00 ms, target <= 1 ms: met"], id="equal-to-the-goal-is-met"),
    pytest.param({"e2e_per_s": 199.6, "publish_per_s": 4_996.0, "p50_ms": 1.004}, 1.002,
                 [False, True, False, False], [
        "end to end vs bare Celery, same settings: 1.996x, target >= 2.00x: not met",
        "end to end vs Dramatiq: 1.33x, target >= 1.00x: met",
        "batch publish vs raw py-amqp: 50.0%, target >= 50%: not met",
        "single call p50: 1.004 ms, target <= 1 ms: not met (not reachable here: the "
        "at-least-once floor of a quorum queue is 1.002 ms)"], id="miss-not-shown-as-goal"),
])
def test_bench_targets_say_which_are_met(ours: dict[str, float], floor_ms: float,
                                         met: list[bool], lines: list[str]) -> None:
    found = targets(rows(ours, floor_ms))
    assert [t["met"] for t in found] == met
    assert [verdict_line(t) for t in found] == lines
    assert found[0]["measured"] == ours["e2e_per_s"] / 100.0  # bare Celery's 100/s


def test_bench_single_call_target_names_a_floor_above_it() -> None:
    ours = {"e2e_per_s": 100.0, "publish_per_s": 6_000.0, "p50_ms": 1.8}
    single = targets(rows(ours, floor_ms=1.05))[-1]
    assert (single["met"], single["reachable"], single["floor_ms"]) == (False, False, 1.05)
    assert verdict_line(single) == (
        "single call p50: 1.80 ms, target <= 1 ms: not met (not reachable here: the "
        "at-least-once floor of a quorum queue is 1.05 ms)")


def test_bench_single_call_miss_above_a_floor_under_1_ms_is_not_excused() -> None:
    ours = {"e2e_per_s": 100.0, "publish_per_s": 6_000.0, "p50_ms": 1.8}
    single = targets(rows(ours, floor_ms=0.97))[-1]
    assert (single["met"], single["reachable"]) == (False, True)
    assert verdict_line(single) == "single call p50: 1.80 ms, target <= 1 ms: not met"


def test_bench_single_call_met_under_a_floor_above_1_ms_says_only_met() -> None:
    ours = {"e2e_per_s": 100.0, "publish_per_s": 6_000.0, "p50_ms": 0.98}
    single = targets(rows(ours, floor_ms=1.02))[-1]  # noise between two measurements
    assert (single["met"], single["reachable"]) == (True, False)
    assert verdict_line(single) == "single call p50: 0.98 ms, target <= 1 ms: met"


def test_bench_without_its_services_is_one_line() -> None:
    """No Docker engine for the containers it needs: one line, exit 1, no traceback."""
    env = {**os.environ, "HARNESS_SERVICES": "containers",
           "DOCKER_HOST": "unix:///nonexistent/docker.sock",
           "BENCH_RESULTS": "/nonexistent/results"}
    out = subprocess.run([sys.executable, "-m", "bench"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1, out.stderr
