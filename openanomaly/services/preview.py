"""What a pipeline would have done over the last hours, without writing anything: the
production check (the code of live runs and backfill) replayed slot by slot, so a user
sees the band, the scores and the alarms before saving a pipeline. ``history`` gives the
same view of what a saved pipeline actually wrote."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openanomaly.domain.detection import running_history
from openanomaly.domain.output import ANOMALY_SCORE, YHAT, YHAT_LOWER, YHAT_UPPER
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import FloatArray, Series
from openanomaly.ports import ModelEngine, TSDBClient
from openanomaly.services.backfill import ROWS_PER_REQUEST, backfill_slots
from openanomaly.services.runs import check_slots, fetch, labels_of, row_of


@dataclass
class SeriesPreview:
    labels: dict[str, str]
    timestamps_ms: list[int]
    actual: FloatArray
    yhat: FloatArray
    lower: FloatArray
    upper: FloatArray
    score: FloatArray
    threshold: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """Plain lists, missing values as None (JSON null)."""
        def nullable(values: FloatArray) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values.tolist()]

        return {"labels": self.labels, "timestamps_ms": self.timestamps_ms,
                "actual": nullable(self.actual), "yhat": nullable(self.yhat),
                "lower": nullable(self.lower), "upper": nullable(self.upper),
                "score": nullable(self.score), "alarms_ms": self.alarms_ms}

    @property
    def alarms_ms(self) -> list[int]:
        """Where the score is above the pipeline's threshold (NaN never is)."""
        above = np.flatnonzero(np.nan_to_num(self.score, nan=-np.inf) > self.threshold)
        return [self.timestamps_ms[i] for i in above]


@dataclass
class Preview:
    pipeline: str
    series: list[SeriesPreview] = field(default_factory=list)
    seconds: float = 0.0


def preview(spec: PipelineSpec, start_ms: int, end_ms: int, tsdb: TSDBClient,
            engine: ModelEngine) -> Preview:
    """Check every slot of [start, end] in time order and return the arrays instead of
    writing them. Calibration learns from the preview's own raw scores as it goes (an
    unsaved pipeline has none stored), as the NAB replay does."""
    started = time.perf_counter()
    result = Preview(spec.name)
    slots = backfill_slots(spec, start_ms, end_ms)
    if not slots:
        return result
    step, window = spec.step_ms, spec.window_steps
    lead = spec.check_span_steps * step
    batch = fetch(spec, tsdb, slots[0] - lead, slots[-1])
    n = batch.n_series
    if n == 0:
        return result
    labels = labels_of(spec, batch)
    running = running_history(spec.scoring, spec.step, np.empty((n, 0)))
    history = running.next_window if running is not None else None
    base = int(batch.timestamps_ms[0])
    columns: dict[str, list[FloatArray]] = {k: [] for k in ("yhat", "lower", "upper", "score")}
    per_request = max(1, min(32, ROWS_PER_REQUEST // n))
    for first in range(0, len(slots), per_request):
        chunk = slots[first:first + per_request]
        checked = check_slots(spec, engine, batch, [(s - base) // step for s in chunk], labels,
                              history=history).checked
        for key in columns:
            # (slots x series, window) -> (series, slots x window): each series in time order
            values = getattr(checked, key).reshape(len(chunk), n, window)
            columns[key].append(values.transpose(1, 0, 2).reshape(n, -1))
    first_point = (slots[0] - base) // step - window + 1
    span = slice(first_point, first_point + len(slots) * window)
    timestamps = batch.timestamps_ms[span].tolist()
    joined = {key: np.concatenate(parts, axis=1) for key, parts in columns.items()}
    for row, source in enumerate(batch.labels):
        result.series.append(SeriesPreview(
            dict(source), timestamps, batch.values[row, span], joined["yhat"][row],
            joined["lower"][row], joined["upper"][row], joined["score"][row],
            threshold=spec.scoring.threshold))
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def history(spec: PipelineSpec, start_ms: int, end_ms: int, tsdb: TSDBClient) -> Preview:
    """What the pipeline wrote over [start, end], beside the actual values it read: the
    same shape as a preview, from the database instead of a replay."""
    started = time.perf_counter()
    result = Preview(spec.name)
    batch = fetch(spec, tsdb, start_ms, end_ms)
    if batch.n_series == 0:
        return result
    labels = labels_of(spec, batch)
    find = row_of(labels)
    written: dict[str, FloatArray] = {}
    points = batch.timestamps_ms.size
    for metric in (YHAT, YHAT_LOWER, YHAT_UPPER, ANOMALY_SCORE):
        grid = np.full((batch.n_series, points), np.nan)
        for found in tsdb.read_written(spec.output.prefix + metric, spec.name, start_ms, end_ms,
                                       spec.step_ms, max_series=spec.max_series):
            row = find(found.labels)
            if row is not None:
                columns = (found.timestamps_ms - int(batch.timestamps_ms[0])) // spec.step_ms
                inside = (columns >= 0) & (columns < points)
                grid[row, columns[inside]] = found.values[inside]
        written[metric] = grid
    timestamps = batch.timestamps_ms.tolist()
    for row, source in enumerate(batch.labels):
        result.series.append(SeriesPreview(
            dict(source), timestamps, batch.values[row], written[YHAT][row],
            written[YHAT_LOWER][row], written[YHAT_UPPER][row], written[ANOMALY_SCORE][row],
            threshold=spec.scoring.threshold))
    result.seconds = round(time.perf_counter() - started, 3)
    return result


# About this many points on a sparkline, whatever the span.
TREND_POINTS = 96


def score_peaks(spec: PipelineSpec, start_ms: int, end_ms: int,
                tsdb: TSDBClient) -> Series | None:
    """The highest anomaly score any series of the pipeline had in each of about
    ``TREND_POINTS`` steps of [start, end], from what it wrote."""
    step = max(spec.step_ms, -(-(end_ms - start_ms) // TREND_POINTS))
    step = -(-step // spec.step_ms) * spec.step_ms  # whole pipeline steps
    return tsdb.peak_written(spec.output.prefix + ANOMALY_SCORE, spec.name, start_ms, end_ms,
                             step)
