"""`openanomaly benchmark e2e` as a process, with a Prometheus of its own."""

import json
import subprocess
import sys


def test_benchmark_e2e_prints_the_stages_and_writes_json(tmp_path):
    out = tmp_path / "e2e.json"
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "e2e", "--series", "40", "--model", "seasonal_naive", "--runs", "2",
         "--context", "6h", "--out", str(out)],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    for stage in ("query.http", "query.decode", "inference", "write.encode", "overhead ratio"):
        assert stage in done.stdout
    results = json.loads(out.read_text())
    assert results["options"]["series"] == 40 and results["machine"]["cpus"] >= 1
    assert [run["series"] for run in results["runs"]] == [40, 40]
    steady = results["runs"][-1]
    assert steady["inference_s"] > 0 and steady["overhead_ratio"] > 0
    assert abs(sum(steady["breakdown"].values()) - steady["seconds"]) < 0.005


def test_benchmark_e2e_needs_a_size(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "e2e"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--series N or --preset" in done.stderr


def test_benchmark_e2e_refuses_a_context_it_cannot_run_with_a_message(tmp_path):
    for context, message in (("abc", "not a duration"), ("90s", "whole number of steps")):
        done = subprocess.run(
            [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config",
             str(tmp_path / "none"), "benchmark", "e2e", "--series", "5", "--context",
             context], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_benchmark_e2e_through_two_celery_workers_shards_every_slot(tmp_path):
    out = tmp_path / "celery.json"
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "e2e", "--series", "60", "--model", "seasonal_naive", "--runs", "2",
         "--context", "6h", "--celery-workers", "2", "--shard-series", "20",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "steady state, 2 workers" in done.stdout and "Redis peak memory" in done.stdout
    results = json.loads(out.read_text())
    assert results["options"]["workers"] == 2 and results["options"]["shard_series"] == 20
    for slot in results["slots"]:
        # Every series of the slot scored, by the shards of one read.
        assert slot["series"] == 60 and 1 <= slot["shards"] <= 3
        assert "query" in slot["read_stages"] and slot["inference_s"] > 0
        assert slot["wall_s"] > 0 and slot["redis_peak_bytes"] > 0
    assert [s["slot"] for s in results["slots"]] == sorted(s["slot"] for s in results["slots"])
