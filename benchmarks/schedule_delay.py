"""How late scheduled runs start: N pipelines on a 1-minute schedule, served by W workers.

    .venv/bin/python -m benchmarks.schedule_delay [--pipelines 1000] [--workers 2] [--concurrency 1]
        [--minutes 4]

Starts its own Prometheus and Redis, one beat and W `openanomaly worker` processes (with
--concurrency pool processes each, default 1), lets them run for the given minutes and
prints, over the runs of every minute but the first (warm-up), the delay between each
slot's scheduled time and the start of its run: median, 99th percentile and maximum,
plus slots missed or run twice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from tests.processes import beat, worker
from tests.redis_server import RedisServer


def config_text(prometheus_url: str, redis_url: str) -> str:
    return (f"prometheus:\n  url: {prometheus_url}\npipelines_file: pipelines.yaml\n"
            f"redis:\n  url: {redis_url}\nscheduler:\n  kind: celery\n"
            "logging:\n  format: json\n  level: INFO\n")


def pipelines_text(count: int) -> str:
    lines = ["pipelines:"]
    for i in range(count):
        query = f'label_replace(vector(1), "bench", "p{i}", "", "")'
        lines += [f"  - name: p{i:04d}", f"    query: '{query}'", "    model: seasonal_naive",
                  "    step: 1m", "    context: 30m", "    horizon: 5m", "    schedule: 1m"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oa-delay-") as tmp:
        work = Path(tmp)
        (work / "prom").mkdir()
        (work / "redis").mkdir()
        with LocalPrometheus(work / "prom", binary=find_prometheus()) as prometheus:
            redis_server = RedisServer(work / "redis")
            config = work / "config.yaml"
            config.write_text(config_text(prometheus.url, redis_server.url))
            (work / "pipelines.yaml").write_text(pipelines_text(args.pipelines))
            procs = [worker(config, work, f"worker-{i}", args.concurrency)
                     for i in range(args.workers)]
            procs.append(beat(config, work))
            started = time.time()
            try:
                print(f"{args.pipelines} pipelines, {args.workers} workers x concurrency "
                      f"{args.concurrency}: running {args.minutes} min", flush=True)
                time.sleep(args.minutes * 60)
            finally:
                for proc in procs:
                    proc.terminate(timeout=60)
                redis_server.stop()
            report(procs[:args.workers], started, args.pipelines)


def report(workers: list, started: float, pipelines: int) -> None:
    # Skip the first minute: beat loading the schedule and workers loading models.
    warm_ms = (int(started) // 60 + 2) * 60_000
    lags: list[float] = []
    measured: set[int] = set()
    runs: dict[tuple[str, int], int] = {}
    last_slot = 0
    for proc in workers:
        for event in proc.events("run started"):
            if int(event["slot"]) >= warm_ms:
                lags.append(int(event["lag_ms"]) / 1000)
                measured.add(int(event["slot"]))
        for event in proc.events("run finished"):
            key = (str(event["pipeline"]), int(event["at"]))
            runs[key] = runs.get(key, 0) + 1
            last_slot = max(last_slot, int(event["at"]))
    # The newest minute may still have been running when the workers stopped.
    slots = range(warm_ms, last_slot, 60_000)
    expected = {(f"p{i:04d}", s) for i in range(pipelines) for s in slots}
    missed = len(expected - set(runs))
    twice = sum(1 for key, n in runs.items() if n > 1 and key in expected)
    values = np.array(lags)
    print(f"runs measured: {len(values)}, slots of {len(measured)} minutes")
    if len(values):
        print(f"start delay: median {np.median(values):.2f}s, p99 "
              f"{np.percentile(values, 99):.2f}s, max {values.max():.2f}s")
    print(f"slots missed: {missed}, run twice: {twice}")


if __name__ == "__main__":
    main()
