"""Latency of a pipeline preview (POST /api/preview): one series, the last 24 hours.

    .venv/bin/python -m benchmarks.preview_latency [--hours 24] [--model fracast] [--repeat 3]

Starts its own Prometheus, writes 25 hours of a daily-seasonal series at 1-minute steps,
then times the preview service (the API endpoint's work: one range query, the production
check slot by slot, nothing written) for a pipeline with step 1m, context 1d and a 5-minute
schedule. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import default_models
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.preview import preview


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--model", default="fracast")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = int(time.time() * 1000)
    stamps = np.arange(now - int((args.hours + 25) * 3_600_000), now, 60_000, dtype=np.int64)
    rng = np.random.default_rng(0)
    minutes = np.arange(stamps.size)
    values = 200 + 50 * np.sin(2 * np.pi * minutes / 1440) + rng.normal(0, 3, stamps.size)
    spec = PipelineSpec(name="preview-bench", query="bench_requests", model=args.model,
                        step="1m", context="1d", schedule="5m")
    engine = LocalModelEngine(default_models())
    with tempfile.TemporaryDirectory(prefix="oa-preview-") as tmp, \
            LocalPrometheus(Path(tmp), binary=find_prometheus()) as prometheus, \
            PrometheusAdapter(PrometheusSettings(url=prometheus.url)) as tsdb:
        tsdb.write([Series.of({"__name__": "bench_requests"}, stamps, values)])
        engine.get(args.model)  # load time is not preview time
        times = []
        for run in range(args.repeat):
            started = time.perf_counter()
            shown = preview(spec, now - int(args.hours * 3_600_000), now, tsdb, engine)
            times.append(time.perf_counter() - started)
            points = len(shown.series[0].timestamps_ms)
            print(f"run {run + 1}: {times[-1]:.2f} s, {points} points scored, "
                  f"{len(shown.series[0].alarms_ms)} alarms")
        print(f"median {statistics.median(times):.2f} s for {args.hours:g} h of one series "
              f"with {args.model}")


if __name__ == "__main__":
    main()
