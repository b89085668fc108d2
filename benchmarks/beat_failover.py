"""Beat failover after kill -9 of the leader, for several lock timeouts.

    .venv/bin/python -m benchmarks.beat_failover [--lock-timeouts 10,30] [--repeat 3]

For each lock timeout and repetition: a fresh Redis, one worker and two beats on a 5-second
pipeline; the leader is killed with SIGKILL and the script measures the gap until the
standby holds the lock, then checks in the worker's log that every slot from the first
to two slots after the takeover ran exactly once. Prints each run and the median gap.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from tests.processes import failover_once
from tests.redis_server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock-timeouts", default="10,30")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    timeouts = [float(t) for t in args.lock_timeouts.split(",")]
    with tempfile.TemporaryDirectory(prefix="oa-failover-") as tmp:
        work = Path(tmp)
        (work / "prom").mkdir()
        with LocalPrometheus(work / "prom", binary=find_prometheus()) as prometheus:
            for timeout in timeouts:
                gaps = []
                for i in range(args.repeat):
                    run_dir = work / f"t{timeout:g}-{i}"
                    (run_dir / "redis").mkdir(parents=True)
                    server = RedisServer(run_dir / "redis")
                    try:
                        result = failover_once(run_dir, prometheus.url, server.url,
                                               uuid.uuid4().hex[:8], timeout)
                    finally:
                        server.stop()
                    gaps.append(result.gap_s)
                    print(f"lock_timeout {timeout:g}s run {i + 1}: gap {result.gap_s:.1f}s, "
                          f"slots {len(result.expected)}, missed {len(result.missed)}, "
                          f"run twice {len(result.duplicated)}", flush=True)
                print(f"lock_timeout {timeout:g}s: median gap {statistics.median(gaps):.1f}s "
                      f"over {len(gaps)} runs", flush=True)


if __name__ == "__main__":
    main()
