"""The anomaly check: from the context before a window to the window's scores and band.

One chain, used by live runs, backfills and the NAB replay alike, so a change to detection
reaches all three: optional re-anchoring of the context after a level shift, the model's
quantile forecast, the interval score against the band (``scoring``) and, where configured,
the detectors beside it (``detectors``: the larger raw score counts), then calibration and
suppression against the series' own raw-score history (``detection``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from openanomaly.domain.detection import (
    ScoreHistory,
    calibrate,
    exceedance_of,
    unseen_peak,
    window_points,
)
from openanomaly.domain.detectors import combined, detector_scores
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.domain.scoring import Scored, band_quantiles, counts_like, noise_level, score
from openanomaly.domain.series import FloatArray
from openanomaly.domain.shifts import reanchor

Forecaster = Callable[[ForecastRequest], QuantileForecast]
"""One model's batched forecast (a ModelEngine bound to a model name)."""

HistoryOf = Callable[[FloatArray], ScoreHistory]
"""The raw-score history before a window, given that window's raw scores (n_series, m);
called once per window, oldest window first."""


@dataclass(frozen=True)
class Checked:
    """Every array is (windows x n_series, window steps), window-major."""

    forecast: QuantileForecast
    yhat: FloatArray
    lower: FloatArray
    """The band's edges: the model's band, or with calibration, where an unsuppressed
    point scores exactly 1."""
    upper: FloatArray
    raw: FloatArray
    """The interval score before calibration (what later runs calibrate against)."""
    score: FloatArray
    calibrated: bool


def prepare_contexts(scoring: ScoringSpec, contexts: FloatArray) -> FloatArray:
    """The contexts as the model sees them (re-anchored after a confirmed level shift)."""
    return reanchor(contexts) if scoring.reanchor_shifts else contexts


def check_windows(
    scoring: ScoringSpec, contexts: FloatArray, actuals: FloatArray, step_seconds: float,
    forecaster: Forecaster, n_series: int, history: HistoryOf | None = None,
    extra_quantiles: Sequence[float] = (), leads: Sequence[int] | None = None,
    window: int | None = None,
) -> Checked:
    """Score ``actuals`` against forecasts from ``contexts``, one row per series and window.

    Rows come in windows of ``n_series`` rows, oldest window first; all go to the model as
    one request. With calibration configured and ``history`` given, each window is
    calibrated on the raw scores before it.

    ``leads`` (one per window) places windows inside forecast blocks: window i's points
    are the columns ``leads[i]`` to ``leads[i] + w`` of ``actuals``, where w is the
    columns after the largest lead; the columns before them are the block's earlier points,
    forecast and seen by the detectors but scored by earlier runs, and the columns after
    them padding. The arrays returned hold the windows' points only; the forecast, every
    column.

    ``window`` splits each window's columns into parts of that many, calibrated in order,
    each on the history before it: check windows that share a block's forecast, as the
    successive runs of a pipeline checking every ``window`` steps calibrate them.
    """
    observed = contexts
    contexts = prepare_contexts(scoring, contexts)
    quantiles = tuple(sorted({*band_quantiles(scoring), *extra_quantiles}))
    forecast = forecaster(ForecastRequest(contexts, actuals.shape[1], quantiles, step_seconds))
    scored = score(scoring, actuals, forecast, noise_level(contexts),
                   counts_like(contexts))
    if scoring.detectors:
        # The detectors judge what the series did, not the re-anchored view of it.
        extra = combined(detector_scores(observed, actuals, step_seconds, scoring.detectors,
                                         scoring.direction.value, scoring.season),
                         actuals.shape)
        scored = replace(scored, score=np.fmax(scored.score, extra))
    if leads is not None:
        scored = _windows_of(scored, leads, n_series)
    calibrating = scoring.calibration_window is not None and history is not None
    if not calibrating:
        return Checked(forecast, scored.yhat, scored.lower, scored.upper, scored.score,
                       scored.score, calibrated=False)
    assert history is not None
    final, lower, upper = scored.score.copy(), scored.lower.copy(), scored.upper.copy()
    exceedance = exceedance_of(scoring, step_seconds)
    suppression = window_points(scoring.suppression_window, step_seconds)
    columns = final.shape[1]
    part = window or columns
    for first in range(0, final.shape[0], n_series):
        for start in range(0, columns, part):
            at = (slice(first, first + n_series), slice(start, start + part))
            before = history(scored.score[at])
            calibrated = calibrate(scored.score[at], before,
                                   suppress=scoring.suppression_window is not None,
                                   exceedance=exceedance,
                                   realarm_margin=scoring.realarm_margin,
                                   recurring_margin=scoring.recurring_margin,
                                   unseen=unseen_peak(before, suppression))
            final[at] = calibrated.score
            factor = calibrated.band_factor[:, None]
            yhat = scored.yhat[at]
            lower[at] = yhat - factor * (yhat - scored.lower[at])
            upper[at] = yhat + factor * (scored.upper[at] - yhat)
    return Checked(forecast, scored.yhat, lower, upper, scored.score, final, calibrated=True)


def _windows_of(scored: Scored, leads: Sequence[int], n_series: int) -> Scored:
    """Each window's own points of block-wide arrays (see ``check_windows``)."""
    columns = scored.score.shape[1]
    width = columns - max(leads, default=0)
    offsets = np.repeat(np.asarray(leads, dtype=np.int64), n_series)
    if offsets.size != scored.score.shape[0]:
        raise ValueError(f"{len(leads)} leads for {scored.score.shape[0]} rows of "
                         f"{n_series} series")
    index = offsets[:, None] + np.arange(width)[None, :]

    def take(values: FloatArray) -> FloatArray:
        return np.take_along_axis(values, index, axis=1)

    return Scored(take(scored.score), take(scored.yhat), take(scored.lower),
                  take(scored.upper))
