"""One scheduled run of a pipeline: fetch, forecast, score, write.

A run at slot ``at`` depends only on the data the query returns (up to float rounding
that varies with how series share a model batch), and a slot's first write stands, so a
retry or a second worker never changes what was written.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from openanomaly.domain.check import Checked, HistoryOf, check_windows, prepare_contexts
from openanomaly.domain.detection import (
    RECENT_LEVELS,
    TAIL_LEVELS,
    RecurringSpan,
    ScoreHistory,
    history_quantile,
    window_points,
)
from openanomaly.domain.errors import DuplicateSamples, OutOfOrderSamples, TooManySeries
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.output import (
    ACTUAL,
    ANOMALY_SCORE,
    FORECAST,
    RAW_SCORE,
    YHAT,
    YHAT_LOWER,
    YHAT_UPPER,
    check_unique,
    output_labels,
    rows_to_series,
)
from openanomaly.domain.pipeline import Mode, PipelineSpec
from openanomaly.domain.series import Series, SeriesBatch, align
from openanomaly.domain.shards import ShardData
from openanomaly.domain.slots import latest_due
from openanomaly.domain.stages import StageClock, part
from openanomaly.domain.timeutil import align_down
from openanomaly.ports import ModelEngine, TSDBClient
from openanomaly.services.context_cache import ContextCache, read_recent

log = logging.getLogger(__name__)

FORECAST_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class RunResult:
    pipeline: str
    at_ms: int
    status: str = "ok"
    """ok; partial (some series skipped or stale); stale (every series' source stopped);
    no_data (the query returned nothing); already_written (the slot was written before)."""
    series: int = 0
    skipped: int = 0
    """Series the model could not forecast (too little history in the context)."""
    stale: int = 0
    """Series with no value in the check window (the source stopped): nothing written."""
    scored_points: int = 0
    anomalous_points: int = 0
    max_score: float = float("nan")
    samples_written: int = 0
    seconds: float = 0.0
    anomalous_series: list[dict[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Where the run's time went: query, history (calibration read-back), inference,
    scoring, write."""
    part_seconds: dict[str, float] = field(default_factory=dict)
    """Parts of those stages, keyed ``stage.part``: the database's answer (``http``), its
    decoding (``decode``), the grid alignment (``align``), the write's encoding
    (``encode``)."""

    def add(self, part: RunResult) -> None:
        """Add the figures of a part of this run that checked other series (a chunk or
        a shard); status, time and stages stay this run's own."""
        self.series += part.series
        self.skipped += part.skipped
        self.stale += part.stale
        self.scored_points += part.scored_points
        self.anomalous_points += part.anomalous_points
        self.samples_written += part.samples_written
        if not np.isnan(part.max_score):
            self.max_score = (part.max_score if np.isnan(self.max_score)
                              else max(self.max_score, part.max_score))
        self.anomalous_series += part.anomalous_series

    def settle(self) -> None:
        """An ok run whose series all stopped is stale; one with some skipped or
        stopped series is partial."""
        if self.status == "ok" and self.series and self.stale == self.series:
            self.status = "stale"
        elif self.status == "ok" and (self.skipped or self.stale):
            self.status = "partial"

    def as_json(self) -> dict[str, Any]:
        """The run's figures as JSON (a missing max_score is null, not NaN)."""
        output = asdict(self)
        if math.isnan(self.max_score):
            output["max_score"] = None
        return output

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunResult:
        max_score = document["max_score"]
        return cls(**{**document, "max_score": float("nan") if max_score is None
                      else max_score})


@dataclass
class CheckOutput:
    """Outputs of the anomaly check of one or more slots over the same series."""

    series: list[Series]
    scores: np.ndarray  # (n_slots, n_series, window_steps)
    skipped: int
    checked: Checked
    stale: int = 0
    """The check's arrays, (n_slots x n_series, window_steps), slot-major."""


def fetch(spec: PipelineSpec, tsdb: TSDBClient, start_ms: int, end_ms: int) -> SeriesBatch:
    """Query [start, end] on the pipeline's step grid; refuse more than max_series series."""
    found = tsdb.query_range(spec.query, start_ms, end_ms, spec.step_ms,
                             max_series=spec.max_series)
    if len(found) > spec.max_series:
        raise TooManySeries(
            f"pipeline {spec.name!r}: the query returned {len(found)} series, more than "
            f"max_series={spec.max_series}; narrow the query or raise max_series"
        )
    with part("align"):
        batch = align(found, start_ms, end_ms, spec.step_ms)
    # An infinite sample is no measurement: treated as missing, as a gap is.
    batch.values[np.isinf(batch.values)] = np.nan
    return batch


def labels_of(spec: PipelineSpec, batch: SeriesBatch) -> list[dict[str, str]]:
    """Output labels of every source series of ``batch``; refuses colliding ones."""
    labels = [output_labels(source, spec) for source in batch.labels]
    check_unique(labels, spec)
    return labels


def row_of(labels: list[dict[str, str]]) -> Callable[[Mapping[str, str]], int | None]:
    """Finds the source series an output series (with or without __name__) belongs to."""
    index = {frozenset(one.items()): i for i, one in enumerate(labels)}
    return lambda found: index.get(frozenset(
        (k, v) for k, v in found.items() if k != "__name__"))


def stored_history(spec: PipelineSpec, tsdb: TSDBClient, labels: list[dict[str, str]],
                   before_ms: int) -> ScoreHistory:
    """The statistics of the raw scores earlier runs wrote, computed by the database over
    the calibration and suppression windows ending just before ``before_ms`` (and over
    the recurring span of the window starting there)."""
    scoring = spec.scoring
    assert scoring.calibration_window is not None
    n = len(labels)
    quantile, peak, recurring = (np.full(n, np.nan) for _ in range(3))
    levels = TAIL_LEVELS if scoring.false_alarm_days is not None else ()
    tail, count = np.full((n, len(levels)), np.nan), np.zeros(n)
    suppression = scoring.suppression_window
    recent_levels = RECENT_LEVELS if suppression is not None else ()
    recent, recent_count = np.full((n, len(recent_levels)), np.nan), np.full(n, np.nan)
    find = row_of(labels)
    span = RecurringSpan.of(scoring, spec.step)
    recurring_range = (None if span is None
                       else span.time_range(before_ms, spec.window_steps, spec.step_ms))
    for stats in tsdb.score_stats(
            spec.output.prefix + RAW_SCORE, spec.name, before_ms - 1,
            history_quantile(scoring, spec.step), round(scoring.calibration_window * 1000),
            round(suppression * 1000) if suppression is not None else None,
            max_series=spec.max_series, tail_levels=levels, recurring=recurring_range,
            recent_levels=recent_levels,
            recent_below=window_points(suppression, spec.step) if recent_levels else None):
        i = find(stats.labels)
        if i is not None:
            quantile[i], peak[i], recurring[i] = stats.quantile, stats.peak, stats.recurring
            if levels and len(stats.tail) == len(levels):
                tail[i] = stats.tail
                count[i] = np.nan_to_num(stats.count, nan=0.0)
            if recent_levels and len(stats.recent) == len(recent_levels):
                recent[i] = stats.recent
                recent_count[i] = stats.recent_count
    return ScoreHistory(quantile, peak, tail if levels else None, count if levels else None,
                        recurring if span is not None else None,
                        recent if recent_levels else None,
                        recent_count if recent_levels else None)


def check_slots(
    spec: PipelineSpec, engine: ModelEngine, batch: SeriesBatch, end_indices: Sequence[int],
    labels: list[dict[str, str]], history: HistoryOf | None = None,
) -> CheckOutput:
    """Score the check window ending at each of ``end_indices`` (grid positions of ``at``).

    Each window is compared with a forecast made from the context that ends just before
    its forecast block (``PipelineSpec.lead_steps``; without blocks, just before the
    window). All windows' series go to the model as one request. With calibration on, ``history``
    gives each window the raw-score statistics before it, and the raw scores are written
    beside the calibrated ones.
    """
    window, context = spec.window_steps, spec.context_steps
    n = batch.n_series
    starts = [end - window + 1 for end in end_indices]
    # Each window is scored against the forecast made at the start of its block.
    leads = [spec.lead_steps(int(batch.timestamps_ms[start])) for start in starts]
    width = window + max(leads, default=0)
    contexts = np.concatenate([_columns(batch.values, start - lead - context, context)
                               for start, lead in zip(starts, leads, strict=True)])
    # A block's points up to the window's end (later ones, of a longer block, are NaN).
    blocks = np.concatenate([_columns(batch.values, start - lead, lead + window, width)
                             for start, lead in zip(starts, leads, strict=True)])
    actuals = np.concatenate([batch.values[:, end - window + 1:end + 1] for end in end_indices])
    checked = check_windows(spec.scoring, contexts, blocks, spec.step,
                            partial(engine.forecast, spec.model), n, history, leads=leads)
    forecast_ok: np.ndarray = np.asarray(np.isfinite(checked.yhat).all(axis=1))
    # A window without one actual value: the source stopped, and nothing is scored.
    has_actual: np.ndarray = np.asarray(np.isfinite(actuals).any(axis=1))
    usable = forecast_ok & has_actual
    outputs = [(ACTUAL, actuals), (YHAT, checked.yhat)]
    if checked.calibrated:
        outputs.append((RAW_SCORE, checked.raw))
    outputs += [(ANOMALY_SCORE, checked.score), (YHAT_LOWER, checked.lower),
                (YHAT_UPPER, checked.upper)]
    prefix = spec.output.prefix
    out: list[Series] = []
    for slot, end in enumerate(end_indices):
        rows = slice(slot * n, (slot + 1) * n)
        keep = np.flatnonzero(usable[rows])
        kept_labels = [labels[i] for i in keep]
        timestamps = batch.timestamps_ms[end - window + 1:end + 1]
        for metric, values in outputs:
            written = rows_to_series(prefix, metric, kept_labels, timestamps,
                                     values[rows][keep])
            if metric == RAW_SCORE:
                # Later runs take quantiles of these samples in the database, which would
                # count a NaN as a value: a point without an actual is left out instead.
                written = [one.where(np.isfinite(one.values)) for one in written]
            out += [one for one in written if one.values.size]
    scores = checked.score.reshape(len(end_indices), n, window)
    last = slice((len(end_indices) - 1) * n, len(end_indices) * n)  # the latest slot's
    if not end_indices:
        return CheckOutput(out, scores, 0, checked)
    # Stale wins over skipped: a source that stopped has no context to forecast from either.
    return CheckOutput(out, scores, int((~forecast_ok[last] & has_actual[last]).sum()),
                       checked, int((~has_actual[last]).sum()))


def _columns(values: np.ndarray, first: int, count: int, width: int | None = None,
             ) -> np.ndarray:
    """``count`` columns of ``values`` from ``first`` on, NaN where that reaches before
    the rows read, padded with NaN to ``width`` columns."""
    out = np.full((values.shape[0], width or count), np.nan)
    lo, hi = max(first, 0), min(first + count, values.shape[1])
    if hi > lo:
        out[:, lo - first:hi - first] = values[:, lo:hi]
    return out


def forecast_ahead(
    spec: PipelineSpec, engine: ModelEngine, batch: SeriesBatch, end_index: int,
    labels: list[dict[str, str]],
) -> list[Series]:
    """Quantile forecasts of the steps after ``end_index``, written at future timestamps.

    Only the last ``check_window`` of the horizon is written, so every future timestamp is
    forecast by exactly one run and no run overwrites another's samples.
    """
    context = prepare_contexts(
        spec.scoring, batch.values[:, end_index - spec.context_steps + 1:end_index + 1])
    horizon = spec.horizon_steps
    forecast: QuantileForecast = engine.forecast(spec.model, ForecastRequest(
        context, horizon, FORECAST_QUANTILES, spec.step))
    stride = min(spec.window_steps, horizon)
    at_ms = int(batch.timestamps_ms[end_index])
    steps = np.arange(horizon - stride + 1, horizon + 1, dtype=np.int64)
    timestamps = at_ms + steps * spec.step_ms
    usable = np.isfinite(forecast.values).all(axis=(1, 2))
    keep = np.flatnonzero(usable)
    out: list[Series] = []
    for q_index, quantile in enumerate(forecast.quantiles):
        values = forecast.values[keep][:, horizon - stride:, q_index]
        out += rows_to_series(spec.output.prefix, FORECAST, [labels[i] for i in keep],
                              timestamps, values, quantile=f"{quantile:g}")
    return out


@dataclass
class SlotRead:
    """A slot's series as read from the database, with their calibration history: what
    the rest of a run needs (a shard of a sharded slot is one of these too)."""

    spec: PipelineSpec
    mode: Mode
    batch: SeriesBatch
    labels: list[dict[str, str]]
    """The output labels of each series (checked for collisions)."""
    history: ScoreHistory | None
    """Read once for all series when the check calibrates; None otherwise."""
    clock: StageClock
    result: RunResult
    started: float
    """time.perf_counter() when the run began."""


def read_slot(
    spec: PipelineSpec, at_ms: int, tsdb: TSDBClient, mode: Mode | None = None,
    contexts: ContextCache | None = None,
) -> SlotRead:
    """Read the slot at or before ``at`` (``slot_of``): its query over the context (and
    check window), and the raw-score history the calibration compares with. With
    ``contexts``, the query reads only the steps since the previous run's
    (services/context_cache.py)."""
    started = time.perf_counter()
    mode = mode or spec.mode
    at = slot_of(spec, at_ms)
    clock = StageClock()
    result = RunResult(spec.name, at, stage_seconds=clock.stages, part_seconds=clock.parts)
    check = mode in (Mode.anomaly, Mode.both)
    span = spec.check_span_steps if check else spec.context_steps - 1
    with clock.stage("query"):
        first = at - span * spec.step_ms
        batch = (fetch(spec, tsdb, first, at) if contexts is None
                 else read_recent(spec, tsdb, first, at, contexts, fetch))
    labels = labels_of(spec, batch)
    history = None
    if batch.n_series and check and spec.scoring.calibration_window is not None:
        end = batch.timestamps_ms.size - 1
        window_start = int(batch.timestamps_ms[max(0, end - spec.window_steps + 1)])
        with clock.stage("history"):
            history = stored_history(spec, tsdb, labels, window_start)
    return SlotRead(spec, mode, batch, labels, history, clock, result, started)


def shard_read(spec: PipelineSpec, slot_ms: int, mode: Mode | None,
               data: ShardData) -> SlotRead:
    """One shard of a slot another worker read, as that worker would have read it."""
    clock = StageClock()
    result = RunResult(spec.name, slot_ms, stage_seconds=clock.stages,
                       part_seconds=clock.parts)
    return SlotRead(spec, mode or spec.mode, data.batch, labels_of(spec, data.batch),
                    data.history, clock, result, time.perf_counter())


def run_pipeline(
    spec: PipelineSpec, at_ms: int, tsdb: TSDBClient, engine: ModelEngine,
    mode: Mode | None = None, contexts: ContextCache | None = None,
) -> RunResult:
    """Run ``spec`` for its slot at or before ``at`` (``slot_of``): read it, then check,
    forecast and write its series in chunks of CHUNK_SERIES, each chunk's outputs in one
    remote-write request where they fit."""
    return score_and_write(read_slot(spec, at_ms, tsdb, mode, contexts), tsdb, engine)


def score_and_write(read: SlotRead, tsdb: TSDBClient, engine: ModelEngine) -> RunResult:
    """The rest of a run after its read: check, forecast and write, chunk by chunk."""
    spec, batch, clock, result = read.spec, read.batch, read.clock, read.result
    stages = clock.stages
    check = read.mode in (Mode.anomaly, Mode.both)
    ahead = read.mode in (Mode.forecast, Mode.both) and spec.output.write_future
    result.series = batch.n_series
    if batch.n_series == 0:
        result.status = "no_data"
        log.warning("query returned no series", extra={"pipeline": spec.name,
                                                       "at": result.at_ms,
                                                       "query": spec.query})
        return result
    end = batch.timestamps_ms.size - 1
    labels, history = read.labels, read.history
    timed = _TimedEngine(engine, clock)
    checking = time.perf_counter()

    for rows in _chunks(batch.n_series):
        chunk = SeriesBatch(batch.labels[rows], batch.timestamps_ms, batch.values[rows])
        outputs: list[Series] = []
        if check:
            checked = check_slots(
                spec, timed, chunk, [end], labels[rows],
                history=None if history is None else partial(_fixed, history.rows(rows)))
            outputs += checked.series
            _add_chunk(result, checked, chunk, spec)
        if ahead:
            outputs += forecast_ahead(spec, timed, chunk, end, labels[rows])
        with clock.stage("write"):
            write(spec, tsdb, outputs, result)
    # Scoring: the check and the output building, without the model and the writes.
    stages["scoring"] = max(0.0, time.perf_counter() - checking - sum(
        stages.get(name, 0.0) for name in ("inference", "write")))
    result.settle()
    result.seconds = round(time.perf_counter() - read.started, 3)
    log.info("run finished", extra={
        "pipeline": spec.name, "at": result.at_ms, "mode": str(read.mode),
        "status": result.status, "series": result.series, "skipped": result.skipped,
        "stale": result.stale, "anomalous_points": result.anomalous_points,
        "samples": result.samples_written, "seconds": result.seconds})
    return result


class _TimedEngine:
    """The engine, with the time spent in it timed as the ``inference`` stage."""

    def __init__(self, engine: ModelEngine, clock: StageClock) -> None:
        self.engine, self.clock = engine, clock

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        with self.clock.stage("inference"):
            return self.engine.forecast(model, request)


def slot_of(spec: PipelineSpec, at_ms: int) -> int:
    """The pipeline's slot at or before ``at``: on its schedule's grid (and its step's), so
    a run asked for any time writes exactly the timestamps its scheduled run writes."""
    return align_down(latest_due(spec.schedule_spec, at_ms), spec.step_ms)


def run_anomaly_check(
    spec: PipelineSpec, at_ms: int, tsdb: TSDBClient, engine: ModelEngine
) -> RunResult:
    return run_pipeline(spec, at_ms, tsdb, engine, Mode.anomaly)


def run_forecast(
    spec: PipelineSpec, at_ms: int, tsdb: TSDBClient, engine: ModelEngine
) -> RunResult:
    return run_pipeline(spec, at_ms, tsdb, engine, Mode.forecast)


def write(spec: PipelineSpec, tsdb: TSDBClient, outputs: list[Series], result: RunResult) -> None:
    if not outputs:
        return
    try:
        tsdb.write(outputs)
    except DuplicateSamples as exc:
        # The slot was written before with other values: the source data changed since
        # (late samples). Prometheus keeps the first write; say so and move on.
        result.status = "already_written"
        log.warning("slot already written with different values; keeping the stored samples",
                    extra={"pipeline": spec.name, "at": result.at_ms, "error": str(exc)})
        return
    except OutOfOrderSamples:
        # Without an out-of-order window, Prometheus refuses a re-run's samples, identical
        # or not. A slot whose first output is stored was written: the first write stands.
        if not _written_before(spec, tsdb, outputs[0]):
            raise
        result.status = "already_written"
        log.warning("slot already written; keeping the stored samples",
                    extra={"pipeline": spec.name, "at": result.at_ms})
        return
    result.samples_written += sum(s.values.size for s in outputs)


def _written_before(spec: PipelineSpec, tsdb: TSDBClient, first: Series) -> bool:
    at = int(first.timestamps_ms[0])
    stored = tsdb.read_written(first.labels["__name__"], spec.name, at, at, spec.step_ms)
    return any(np.isfinite(found.values).any() for found in stored)


def summarise(result: RunResult, checked: CheckOutput, batch: SeriesBatch,
               spec: PipelineSpec) -> None:
    scores = checked.scores
    result.skipped = max(result.skipped, checked.skipped)
    result.stale = max(result.stale, checked.stale)
    finite = np.isfinite(scores)
    result.scored_points += int(finite.sum())
    over = np.where(finite, scores, 0.0) > spec.scoring.threshold
    result.anomalous_points += int(over.sum())
    if finite.any():
        best = float(np.nanmax(scores))
        result.max_score = best if np.isnan(result.max_score) else max(result.max_score, best)
    for index in np.flatnonzero(over.any(axis=(0, 2))):
        if batch.labels[index] not in result.anomalous_series:
            result.anomalous_series.append(batch.labels[index])


# Series checked, forecast and written together: a run's working memory grows with this,
# not with the number of series the query returns.
CHUNK_SERIES = 2000


def _chunks(n: int, size: int | None = None) -> list[slice]:
    size = size or CHUNK_SERIES
    return [slice(first, min(first + size, n)) for first in range(0, n, size)]


def _fixed(history: ScoreHistory, _raw: object) -> ScoreHistory:
    return history


def _add_chunk(result: RunResult, checked: CheckOutput, chunk: SeriesBatch,
               spec: PipelineSpec) -> None:
    """Add a chunk's check to the run's figures (chunks hold different series)."""
    part = RunResult(result.pipeline, result.at_ms)
    summarise(part, checked, chunk, spec)
    result.add(part)


@dataclass(frozen=True)
class Anomaly:
    labels: dict[str, str]
    at_ms: int
    score: float


def recent_anomalies(spec: PipelineSpec, tsdb: TSDBClient, start_ms: int, end_ms: int,
                     limit: int = 500) -> list[Anomaly]:
    """Points the pipeline scored above its threshold in [start, end], newest first."""
    found: list[Anomaly] = []
    for series in tsdb.read_written(spec.output.prefix + ANOMALY_SCORE, spec.name, start_ms,
                                    end_ms, spec.step_ms, max_series=spec.max_series):
        above = np.flatnonzero(np.nan_to_num(series.values, nan=-np.inf) > spec.scoring.threshold)
        labels = {k: v for k, v in series.labels.items() if k != "__name__"}
        found += [Anomaly(labels, int(series.timestamps_ms[i]), float(series.values[i]))
                  for i in above]
    found.sort(key=lambda anomaly: anomaly.at_ms, reverse=True)
    return found[:limit]
