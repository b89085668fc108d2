"""End-to-end speed of a pipeline: a fleet of series in the database, then scheduled runs
through the production path (query, alignment, inference, scoring, calibration read-back,
encoding, remote write), each stage and part timed (domain/stages.py).

The figure a user sizes by is the overhead ratio: the time of everything that is not the
model's forward pass divided by the forward pass. At 0.1 the pipeline around the model
costs a tenth of the model.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.synthetic import FLEET_METRIC, fleet_series
from openanomaly.ports import ModelEngine, TSDBClient
from openanomaly.services.context_cache import ContextCache
from openanomaly.services.runs import RunResult, run_pipeline

PIPELINE = "bench-e2e"
INTERVAL_S = 300.0
# Series generated and written per remote-write batch while loading the fleet.
_LOAD_CHUNK = 2000

# The rows of the breakdown, in pipeline order: (stage, part); a part of None is what the
# stage spent outside its marked parts.
BREAKDOWN = (
    ("query", "http"), ("query", "decode"), ("query", "align"), ("query", "cache"),
    ("query", None),
    ("inference", None), ("scoring", None),
    ("history", "http"), ("history", "decode"), ("history", None),
    ("write", "encode"), ("write", "http"), ("write", None),
)


def bench_pipeline(series: int, model: str, step_s: float, context_s: float,
                   metric: str = FLEET_METRIC) -> PipelineSpec:
    """The pipeline every run of the benchmark runs: the whole fleet, every 5 minutes,
    with the default scoring."""
    return PipelineSpec(name=PIPELINE, query=metric, model=model, step=step_s,
                        context=context_s, schedule=f"{INTERVAL_S:g}s", max_series=series)


def slots(last_ms: int, runs: int) -> list[int]:
    """The ``runs`` consecutive 5-minute slots ending at ``last_ms``, oldest first."""
    interval_ms = round(INTERVAL_S * 1000)
    return [last_ms - (runs - 1 - i) * interval_ms for i in range(runs)]


def fleet_points(spec: PipelineSpec, runs: int) -> int:
    """Rows of history every run's query finds whole."""
    later_runs = spec.window_steps * (runs - 1)
    return spec.check_span_steps + 1 + later_runs + round(INTERVAL_S / spec.step)


def load_fleet(tsdb: TSDBClient, series: int, last_ms: int, points: int, step_s: float,
               progress: Callable[[int], None] = lambda done: None,
               metric: str = FLEET_METRIC) -> int:
    """Write ``series`` fleet series of ``points`` rows ending at ``last_ms``; the number
    of samples written."""
    start_ms = last_ms - round(step_s * 1000) * (points - 1)
    written = 0
    for first in range(0, series, _LOAD_CHUNK):
        chunk = fleet_series(first, min(_LOAD_CHUNK, series - first), start_ms, points, step_s,
                             metric=metric)
        tsdb.write(chunk)
        written += sum(one.values.size for one in chunk)
        progress(first + len(chunk))
    return written


@dataclass
class Measured:
    result: RunResult
    peak_rss_bytes: int

    @property
    def at_ms(self) -> int:
        return self.result.at_ms

    @property
    def seconds(self) -> float:
        return self.result.seconds

    @property
    def inference(self) -> float:
        return self.result.stage_seconds.get("inference", 0.0)

    @property
    def overhead_ratio(self) -> float:
        """Everything that is not the forward pass, per second of forward pass."""
        return (self.seconds - self.inference) / self.inference if self.inference > 0 else \
            float("inf")

    @property
    def series_per_s(self) -> float:
        return self.result.series / self.seconds if self.seconds > 0 else 0.0

    def breakdown(self) -> list[tuple[str, float]]:
        """Seconds per row of BREAKDOWN (rows without time left out), then the rest of the
        run (logging, bookkeeping) as ``other``."""
        stages, parts = self.result.stage_seconds, self.result.part_seconds
        rows = []
        for stage, name in BREAKDOWN:
            if name is not None:
                spent = parts.get(f"{stage}.{name}", 0.0)
            else:
                own = [v for k, v in parts.items() if k.startswith(f"{stage}.")]
                spent = max(0.0, stages.get(stage, 0.0) - sum(own))
            if spent > 0:
                rows.append((f"{stage}.{name}" if name else stage, spent))
        rows.append(("other", max(0.0, self.seconds - sum(stages.values()))))
        return rows


@dataclass
class Cycle:
    """The benchmark's runs, oldest first: the first has no score history to read back;
    the last is the steady state a live pipeline repeats every 5 minutes."""

    series: int
    samples_loaded: int
    load_seconds: float
    runs: list[Measured] = field(default_factory=list)

    @property
    def steady(self) -> Measured:
        return self.runs[-1]


def run_cycles(spec: PipelineSpec, tsdb: TSDBClient, engine: ModelEngine,
               at: Sequence[int], echo: Callable[[Measured], None] = lambda m: None,
               contexts: ContextCache | None = None) -> list[Measured]:
    """Run ``spec`` at each slot of ``at`` in turn, as the scheduler would (with
    ``contexts``, as a live process does: reading only what is new)."""
    measured = []
    for at_ms in at:
        result = run_pipeline(spec, at_ms, tsdb, engine, contexts=contexts)
        if result.status not in ("ok", "partial"):
            raise RuntimeError(f"the benchmark run at {at_ms} ended {result.status!r}: "
                               "the fleet is not where the pipeline reads")
        one = Measured(result, peak_rss_bytes())
        measured.append(one)
        echo(one)
    return measured


def peak_rss_bytes() -> int:
    """The process' peak resident memory so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def timed_load(tsdb: TSDBClient, spec: PipelineSpec, series: int, runs: int, last_ms: int,
               progress: Callable[[int], None] = lambda done: None) -> Cycle:
    started = time.perf_counter()
    samples = load_fleet(tsdb, series, last_ms, fleet_points(spec, runs), spec.step, progress)
    return Cycle(series, samples, time.perf_counter() - started)
