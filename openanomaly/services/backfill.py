"""Replay a pipeline's anomaly check over history and write the historical scores."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from openanomaly.domain.detection import RunningHistory, history_points, running_history
from openanomaly.domain.output import RAW_SCORE
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.timeutil import align_down
from openanomaly.ports import ModelEngine, TSDBClient
from openanomaly.services.runs import (
    RunResult,
    check_slots,
    fetch,
    labels_of,
    row_of,
    summarise,
    write,
)

log = logging.getLogger(__name__)

ROWS_PER_REQUEST = 2048

Progress = Callable[[int, int], None]
"""Called with (slots done, slots in all) after each chunk."""


def backfill_slots(spec: PipelineSpec, start_ms: int, end_ms: int) -> list[int]:
    """The slot times whose check windows tile [start, end]: the same slots the scheduler
    would have run, so a backfill and live runs write the same timestamps."""
    window_ms = spec.window_steps * spec.step_ms
    first = align_down(start_ms, window_ms) + window_ms
    last = align_down(end_ms, window_ms)
    return list(range(first, last + 1, window_ms))


def stored_raw_scores(spec: PipelineSpec, tsdb: TSDBClient, labels: list[dict[str, str]],
                      first_window_ms: int, points: int) -> np.ndarray:
    """The raw scores stored for the ``points`` steps before ``first_window_ms``, one row
    per source series (NaN where none), oldest first."""
    past = np.full((len(labels), points), np.nan)
    if points == 0:
        return past
    step = spec.step_ms
    start, end = first_window_ms - points * step, first_window_ms - step
    find = row_of(labels)
    for found in tsdb.read_written(spec.output.prefix + RAW_SCORE, spec.name, start, end, step,
                                   max_series=spec.max_series):
        row = find(found.labels)
        if row is not None:
            past[row, (found.timestamps_ms - start) // step] = found.values
    return past


def memory_history(spec: PipelineSpec, tsdb: TSDBClient, labels: list[dict[str, str]],
                   first_window_ms: int) -> RunningHistory | None:
    """The history of slots checked in time order: the raw scores stored before the
    backfill (read once), then those of the slots already checked, as live runs would
    have found them in the database."""
    scoring = spec.scoring
    if scoring.calibration_window is None:
        return None
    past = stored_raw_scores(spec, tsdb, labels, first_window_ms,
                             history_points(scoring, spec.step))
    return running_history(scoring, spec.step, past)


def backfill(
    spec: PipelineSpec, start_ms: int, end_ms: int, tsdb: TSDBClient, engine: ModelEngine,
    progress: Progress | None = None, slots_per_request: int = 32,
) -> RunResult:
    """Check every slot in [start, end] in time order and write the scores as it goes.

    The history is fetched once; slots are scored in chunks that share model batches.
    """
    started = time.perf_counter()
    slots = backfill_slots(spec, start_ms, end_ms)
    result = RunResult(spec.name, slots[-1] if slots else end_ms)
    if not slots:
        return result
    step = spec.step_ms
    lead = spec.check_span_steps * step
    batch = fetch(spec, tsdb, slots[0] - lead, slots[-1])
    result.series = batch.n_series
    if batch.n_series == 0:
        result.status = "no_data"
        log.warning("query returned no series", extra={"pipeline": spec.name,
                                                       "query": spec.query})
        return result
    base = int(batch.timestamps_ms[0])
    labels = labels_of(spec, batch)
    # Bound the rows of one model request, so many series do not multiply into gigabytes.
    per_request = max(1, min(slots_per_request, ROWS_PER_REQUEST // batch.n_series))
    history = memory_history(spec, tsdb, labels, slots[0] - (spec.window_steps - 1) * step)
    for first in range(0, len(slots), per_request):
        chunk = slots[first:first + per_request]
        checked = check_slots(spec, engine, batch, [(slot - base) // step for slot in chunk],
                              labels, history=None if history is None else history.next_window)
        summarise(result, checked, batch, spec)
        write(spec, tsdb, checked.series, result)
        if progress:
            progress(first + len(chunk), len(slots))
    result.seconds = round(time.perf_counter() - started, 3)
    log.info("backfill finished", extra={
        "pipeline": spec.name, "slots": len(slots), "series": result.series,
        "anomalous_points": result.anomalous_points, "samples": result.samples_written,
        "seconds": result.seconds})
    return result
