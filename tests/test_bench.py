"""`make bench` runs end to end (tiny sizes, its own results folder); no time is asserted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.processes import ROOT, clean_env


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
    assert [m["completed"] for m in report["memory"]] == [50, 200]  # every task came back
    assert [s["workers"] for s in report["scale"]] == [1, 2, 4]
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "this project" in out.stdout  # the table
