"""`openanomaly benchmark e2e`: series scored per cycle, end to end, and where the time goes.

A fleet of node-exporter-like series is written into a Prometheus (a local one started
for the run unless a URL is given), then one pipeline over the whole fleet runs at
consecutive 5-minute slots through the production code. The first run has no score
history to read back; the last is the steady state a live pipeline repeats.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openanomaly.bootstrap import (
    benchmark_engine,
    benchmark_model,
    benchmark_tsdb,
    demo_prometheus,
)
from openanomaly.config import AppConfig
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.timeutil import align_down
from openanomaly.entrypoints.benchmark.models import machine_info
from openanomaly.entrypoints.progress import Progress
from openanomaly.ports import TSDBClient
from openanomaly.services import e2e_bench
from openanomaly.services.context_cache import ContextCache
from openanomaly.services.e2e_bench import Cycle, Measured

PRESETS = {"1k": 1_000, "10k": 10_000, "100k": 100_000}
CYCLE_S = e2e_bench.INTERVAL_S


@dataclass(frozen=True)
class E2EOptions:
    series: int
    model: str
    runs: int = 3
    step_s: float = 60.0
    context_s: float = 86400.0
    device: str | None = None
    prometheus_url: str | None = None
    """None: start a local Prometheus (the Debian package's binary) for the run."""
    context_cache: bool = True
    """Runs read only what is new since the previous run, as a live process does."""

    def pipeline(self) -> PipelineSpec:
        return e2e_bench.bench_pipeline(self.series, self.model, self.step_s, self.context_s)


def run_e2e(options: E2EOptions, config: AppConfig | None, out: Path | None,
            echo: Callable[[str], None], prometheus_binary: str = "prometheus") -> Cycle:
    spec = options.pipeline()
    with contextlib.ExitStack() as stack:
        tsdb = benchmark_tsdb(prometheus(stack, options, prometheus_binary, echo))
        stack.callback(tsdb.close)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openanomaly-")))
        settings, weights = benchmark_model(options.model, config, options.device, folder,
                                            512)
        engine = benchmark_engine({**(config.models if config else {}),
                                   options.model: settings})
        loaded = time.perf_counter()
        engine.get(options.model)
        echo(f"model {options.model} ({weights} weights) loaded in "
             f"{time.perf_counter() - loaded:.1f} s")
        cycle, last = load_fleet(tsdb, options, echo)

        def show(one: Measured) -> None:
            echo(f"run at {one.at_ms}: {one.result.series} series in {one.seconds:.2f} s, "
                 f"inference {one.inference:.2f} s, overhead ratio {one.overhead_ratio:.2f}")

        contexts = ContextCache() if options.context_cache else None
        cycle.runs = e2e_bench.run_cycles(spec, tsdb, engine,
                                          e2e_bench.slots(last, options.runs), show, contexts)
    for line in table(cycle):
        echo(line)
    if out is not None:
        out.write_text(json.dumps(as_json(cycle, options, weights), indent=2))
        echo(f"\nwritten to {out}")
    return cycle


def prometheus(stack: contextlib.ExitStack, options: E2EOptions, binary: str,
               echo: Callable[[str], None]) -> str:
    """The URL of the Prometheus to benchmark against: the given one, or a local one that
    ``stack`` stops."""
    if options.prometheus_url is not None:
        return options.prometheus_url
    url = stack.enter_context(demo_prometheus(None, binary)).url
    echo(f"local Prometheus at {url}")
    return url


def load_fleet(tsdb: TSDBClient, options: E2EOptions,
               echo: Callable[[str], None]) -> tuple[Cycle, int]:
    """Write the fleet, with progress; the load's figures and the last slot, the 5-minute
    grid point just behind the clock."""
    interval_ms = round(CYCLE_S * 1000)
    last = align_down(int(time.time() * 1000), interval_ms) - interval_ms
    with Progress("load fleet", "series", total=options.series) as progress:
        cycle = e2e_bench.timed_load(tsdb, options.pipeline(), options.series, options.runs,
                                     last, progress.update_to)
    echo(f"wrote {options.series} series, {cycle.samples_loaded} samples, in "
         f"{cycle.load_seconds:.1f} s")
    return cycle, last


def table(cycle: Cycle) -> list[str]:
    """The steady-state run's stages, with the share of the run each took."""
    steady = cycle.steady
    lines = ["", f"{'stage':<16} {'seconds':>9} {'share':>7} {'ms/series':>10}",
             "-" * 45]
    for name, seconds in steady.breakdown():
        lines.append(f"{name:<16} {seconds:>9.3f} {seconds / steady.seconds:>7.1%} "
                     f"{1000 * seconds / max(1, cycle.series):>10.3f}")
    lines += ["-" * 45,
              f"{'run':<16} {steady.seconds:>9.3f} {1:>7.0%} "
              f"{1000 * steady.seconds / max(1, cycle.series):>10.3f}",
              "",
              f"series per second: {steady.series_per_s:.0f}; series per {CYCLE_S:g} s cycle "
              f"at this rate: {fits_per_cycle(steady):.0f}",
              f"overhead ratio (everything but inference / inference): "
              f"{steady.overhead_ratio:.2f}",
              f"peak memory of the process: {steady.peak_rss_bytes / 2**20:.0f} MiB"]
    return lines


def fits_per_cycle(run: Measured) -> float:
    return run.series_per_s * CYCLE_S


def as_json(cycle: Cycle, options: E2EOptions, weights: str) -> dict[str, Any]:
    return {
        "machine": machine_info(),
        "options": {"series": options.series, "model": options.model, "weights": weights,
                    "runs": options.runs, "step_s": options.step_s,
                    "context_s": options.context_s, "device": options.device,
                    "context_cache": options.context_cache,
                    "prometheus_url": options.prometheus_url},
        "load": {"samples": cycle.samples_loaded, "seconds": cycle.load_seconds},
        "runs": [{
            "at_ms": one.at_ms, "status": one.result.status, "series": one.result.series,
            "seconds": one.seconds, "inference_s": one.inference,
            "overhead_ratio": one.overhead_ratio, "series_per_s": one.series_per_s,
            "series_per_cycle": fits_per_cycle(one),
            "peak_rss_bytes": one.peak_rss_bytes,
            "samples_written": one.result.samples_written,
            "stages": one.result.stage_seconds, "parts": one.result.part_seconds,
            "breakdown": dict(one.breakdown()),
        } for one in cycle.runs],
    }
