"""Replay labelled series causally through the production scoring, for the NAB benchmark.

Each file is cut into blocks of rows after its probation period, as many as a pipeline
on the default schedule scores against one forecast (``block_rows``); every block is
forecast from at most ``context`` rows before it (never from the rows it is judged on)
and scored with the pipeline's domain scoring, exactly as the scheduled anomaly checks of
that block would: raw interval scores first, then, when the pipeline calibrates, the
detection stage, one check window at a time with the statistics of the raw scores before
it, as production reads them back from the database. The blocks of the probation period's
second half are scored too, unreported, so that calibration starts warm, as it does in
production after a backfill.

The same blocks give the forecast accuracy of the model against seasonal naive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from openanomaly.domain.check import HistoryOf, check_windows, prepare_contexts
from openanomaly.domain.detection import running_history
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.nab_scoring import LabelledScores, first_scored_row
from openanomaly.domain.pipeline import ScoringSpec, block_length
from openanomaly.domain.series import FloatArray
from openanomaly.ports import ModelEngine

BASELINE = "seasonal_naive"
ACCURACY_QUANTILES = (0.1, 0.5, 0.9)
# A pipeline's default check window: the span its default 5-minute schedule scores.
DEFAULT_WINDOW_S = 300.0


def window_rows(step_seconds: float) -> int:
    """Rows of a pipeline's default check window at this step."""
    return max(1, round(DEFAULT_WINDOW_S / step_seconds))


def block_rows(scoring: ScoringSpec, window: int, horizon: int | None = None) -> int:
    """Rows scored against one forecast: ``horizon`` where given, else what a pipeline
    checking ``window`` rows at a time scores against one (``block_length``)."""
    if horizon is not None:
        return horizon
    return block_length(scoring.forecast_block, window) or window


@dataclass(frozen=True)
class ReplayInput:
    name: str
    values: FloatArray
    windows: tuple[tuple[int, int], ...]
    step_seconds: float = 300.0
    positions: npt.NDArray[np.int64] | None = None
    """Each row's place on the step grid (see ``grid_positions``); None: rows are the grid."""


def grid_positions(timestamps_ms: npt.NDArray[np.int64], step_ms: float) -> npt.NDArray[np.int64]:
    """Where each row falls on a regular grid of ``step_ms`` from the first row, as a
    database query on the pipeline's step would place it: missing steps become gaps, a
    repeated or backwards stamp shares the cell of the row before it."""
    offsets = np.rint((timestamps_ms - timestamps_ms[0]) / step_ms).astype(np.int64)
    return np.maximum.accumulate(offsets)


@dataclass(frozen=True)
class Accuracy:
    """Errors of the model's and of seasonal naive's forecasts over the scored rows."""

    mae: float
    baseline_mae: float
    quantile_loss: float
    baseline_quantile_loss: float

    @property
    def relative_mae(self) -> float:
        """The model's MASE over seasonal naive's (the shared scale cancels)."""
        return self.mae / self.baseline_mae if self.baseline_mae > 0 else float("nan")

    @property
    def relative_quantile_loss(self) -> float:
        return (self.quantile_loss / self.baseline_quantile_loss
                if self.baseline_quantile_loss > 0 else float("nan"))


@dataclass(frozen=True)
class Replayed:
    labelled: LabelledScores
    median: FloatArray  # the median forecast of each scored row (NaN elsewhere)
    accuracy: Accuracy


def replay_history(scoring: ScoringSpec, item: ReplayInput) -> HistoryOf | None:
    """Each block is calibrated on the raw scores of the blocks before it, as successive
    production runs are on what earlier runs wrote."""
    history = running_history(scoring, item.step_seconds, np.empty((1, 0)))
    return history.next_window if history is not None else None


def _pinball(actual: FloatArray, forecast: QuantileForecast, steps: int) -> float:
    losses = []
    for quantile in ACCURACY_QUANTILES:
        error = actual - forecast.at(quantile)[:, :steps]
        losses.append(np.nanmean(np.maximum(quantile * error, (quantile - 1) * error)))
    return float(2 * np.mean(losses))


def _accuracy(actual: FloatArray, model: QuantileForecast,
              baseline: QuantileForecast) -> Accuracy:
    steps = actual.shape[1]
    return Accuracy(
        mae=float(np.nanmean(np.abs(actual - model.at(0.5)[:, :steps]))),
        baseline_mae=float(np.nanmean(np.abs(actual - baseline.at(0.5)[:, :steps]))),
        quantile_loss=_pinball(actual, model, steps),
        baseline_quantile_loss=_pinball(actual, baseline, steps),
    )


def replay_file(
    item: ReplayInput, scoring: ScoringSpec, engine: ModelEngine, model: str,
    horizon: int | None, context: int, window: int | None = None,
) -> Replayed:
    """Replay on the step grid, where gaps are NaN as in production, and report one
    score per row of the file; blocks of ``horizon`` rows (None: ``block_rows``), each
    calibrated in check windows of ``window`` rows (None: a default pipeline's)."""
    window = window or window_rows(item.step_seconds)
    horizon = block_rows(scoring, window, horizon)
    window = min(window, horizon)
    if item.positions is None:
        return _replay_grid(item, scoring, engine, model, horizon, window, context)
    positions = item.positions
    grid = np.full(int(positions[-1]) + 1, np.nan)
    grid[positions] = item.values  # a repeated stamp keeps the later row's value
    first = first_scored_row(item.values.size)
    first_scored = int(positions[first])
    on_grid = _replay_grid(ReplayInput(item.name, grid, (), item.step_seconds), scoring,
                           engine, model, horizon, window, context, first_scored)
    scores = on_grid.labelled.scores[positions]
    scores[:first] = np.nan
    return Replayed(LabelledScores(item.name, scores, item.windows),
                    on_grid.median[positions], on_grid.accuracy)


def warm_up_origin(start: int, horizon: int) -> int:
    """The first block of the calibration's warm-up: blocks on the same grid as the
    scored ones, over the second half of the probation period (the first half is context
    only: forecasts from a few rows would fill the history with scores no later run sees)."""
    earliest = max(8, start // 2)
    return start - max(0, (start - earliest) // horizon) * horizon


def _replay_grid(
    item: ReplayInput, scoring: ScoringSpec, engine: ModelEngine, model: str,
    horizon: int, window: int, context: int, first_scored: int | None = None,
) -> Replayed:
    values = item.values
    rows = values.size
    start = first_scored if first_scored is not None else first_scored_row(rows)
    # The probation rows warm the calibration up, as a backfill does before a pipeline
    # goes live (NAB's probation is for learning): scored, fed to the history, not reported.
    first = warm_up_origin(start, horizon) if scoring.calibration_window is not None else start
    origins = list(range(first, rows, horizon))
    contexts = np.full((len(origins), context), np.nan)
    actuals = np.full((len(origins), horizon), np.nan)
    for index, origin in enumerate(origins):
        past = values[max(0, origin - context):origin]
        contexts[index, context - past.size:] = past
        ahead = values[origin:origin + horizon]
        actuals[index, :ahead.size] = ahead
    checked = check_windows(scoring, contexts, actuals, item.step_seconds,
                            partial(engine.forecast, model), 1, replay_history(scoring, item),
                            extra_quantiles=ACCURACY_QUANTILES, window=window)
    forecast = checked.forecast
    skip = start - first
    # Accuracy is measured on the reported blocks only, not on the warm-up.
    blocks = slice(skip // horizon, None)
    baseline = _rows(forecast, blocks) if model == BASELINE else engine.forecast(
        BASELINE, ForecastRequest(prepare_contexts(scoring, contexts[blocks]), horizon,
                                  forecast.quantiles, item.step_seconds))
    scores = np.full(rows, np.nan)
    scores[start:] = checked.score.reshape(-1)[skip:skip + rows - start]
    median = np.full(rows, np.nan)
    median[start:] = checked.yhat.reshape(-1)[skip:skip + rows - start]
    return Replayed(LabelledScores(item.name, scores, item.windows), median,
                    _accuracy(actuals[blocks], _rows(forecast, blocks), baseline))


def _rows(forecast: QuantileForecast, rows: slice) -> QuantileForecast:
    return QuantileForecast(forecast.quantiles, forecast.values[rows])


def replay(
    items: Sequence[ReplayInput], scoring: ScoringSpec, engine: ModelEngine, model: str,
    horizon: int | None = None, context: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> list[Replayed]:
    out = []
    for index, item in enumerate(items):
        out.append(replay_file(item, scoring, engine, model, horizon, context))
        if progress:
            progress(index + 1, len(items))
    return out
