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

from openanomaly.domain.detection import ScoreHistory, calibrate, exceedance_of
from openanomaly.domain.detectors import combined, detector_scores
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.domain.scoring import band_quantiles, counts_like, noise_level, score
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
    extra_quantiles: Sequence[float] = (),
) -> Checked:
    """Score ``actuals`` against forecasts from ``contexts``, one row per series and window.

    Rows come in windows of ``n_series`` rows, oldest window first; all go to the model as
    one request. With calibration configured and ``history`` given, each window is
    calibrated on the raw scores before it.
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
    calibrating = scoring.calibration_window is not None and history is not None
    if not calibrating:
        return Checked(forecast, scored.yhat, scored.lower, scored.upper, scored.score,
                       scored.score, calibrated=False)
    assert history is not None
    final, lower, upper = scored.score.copy(), scored.lower.copy(), scored.upper.copy()
    exceedance = exceedance_of(scoring, step_seconds)
    for first in range(0, actuals.shape[0], n_series):
        rows = slice(first, first + n_series)
        calibrated = calibrate(scored.score[rows], history(scored.score[rows]),
                               suppress=scoring.suppression_window is not None,
                               exceedance=exceedance)
        final[rows] = calibrated.score
        factor = calibrated.band_factor[:, None]
        yhat = scored.yhat[rows]
        lower[rows] = yhat - factor * (yhat - scored.lower[rows])
        upper[rows] = yhat + factor * (scored.upper[rows] - yhat)
    return Checked(forecast, scored.yhat, lower, upper, scored.score, final, calibrated=True)

