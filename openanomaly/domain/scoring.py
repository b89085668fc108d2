"""Anomaly scores of actual values against a quantile forecast.

The interval score is 0 where the actual equals the median forecast, 1 at the band edge
and above 1 outside the band. NaN actuals or forecasts give NaN scores, never 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from openanomaly.domain.forecast import QuantileForecast
from openanomaly.domain.pipeline import Direction, ScoringSpec, Technique
from openanomaly.domain.series import FloatArray

# A band narrower than this (relative to the median's magnitude) is treated as this wide.
# Models compute in float32, whose resolution is about 6e-8 of the value: a narrower band
# is rounding noise, and would make a constant series (up == 1) alarm on it. Real changes
# of a flat series still score far above 1.
_RELATIVE_WIDTH_FLOOR = 1e-6


@dataclass(frozen=True)
class Scored:
    """Per point of a check window: the score and the (scaled) band it was measured against."""

    score: FloatArray
    yhat: FloatArray
    lower: FloatArray
    upper: FloatArray


def band_quantiles(spec: ScoringSpec) -> tuple[float, float, float]:
    return (spec.band[0], 0.5, spec.band[1])


def noise_level(context: FloatArray) -> FloatArray:
    """Robust per-series noise scale: the MAD of step-to-step changes, as a standard
    deviation of one point (changes of i.i.d. noise have sqrt(2) times its spread)."""
    changes = np.diff(context, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, on purpose
        centre = np.nanmedian(changes, axis=1, keepdims=True)
        mad = np.nanmedian(np.abs(changes - centre), axis=1)
    return np.asarray(1.4826 * mad / np.sqrt(2.0))


def score(
    spec: ScoringSpec, actual: FloatArray, forecast: QuantileForecast,
    noise: FloatArray | None = None,
) -> Scored:
    """Score ``actual`` (n_series, n_steps) against the first n_steps of ``forecast``.

    ``noise`` (one value per series, see ``noise_level``) sets the band's minimum width
    when ``spec.noise_floor`` is positive.
    """
    steps = actual.shape[1]
    median = forecast.at(0.5)[:, :steps]
    below = spec.band_scale * (median - forecast.at(spec.band[0])[:, :steps])
    above = spec.band_scale * (forecast.at(spec.band[1])[:, :steps] - median)
    if spec.noise_floor > 0 and noise is not None:
        floor = spec.noise_floor * np.nan_to_num(noise, nan=0.0)[:, None]
        below = np.maximum(below, floor)
        above = np.maximum(above, floor)
    lower = median - below
    upper = median + above
    if spec.technique == Technique.interval:
        values = interval_score(actual, median, lower, upper, spec.direction, spec.min_deviation)
    else:
        values = zscore_score(
            actual, median, lower, upper, spec.band, spec.zscore_threshold,
            spec.direction, spec.min_deviation,
        )
    return Scored(values, median, lower, upper)


def interval_score(
    actual: FloatArray, median: FloatArray, lower: FloatArray, upper: FloatArray,
    direction: Direction = Direction.both, min_deviation: float = 0.0,
) -> FloatArray:
    residual = actual - median
    floor = _RELATIVE_WIDTH_FLOOR * np.maximum(np.abs(median), 1.0)
    above = residual / np.maximum(upper - median, floor)
    below = -residual / np.maximum(median - lower, floor)
    with np.errstate(invalid="ignore"):
        result = np.where(residual >= 0, above, below)
    return _finish(result, residual, direction, min_deviation)


def zscore_score(
    actual: FloatArray, median: FloatArray, lower: FloatArray, upper: FloatArray,
    band: tuple[float, float], threshold: float,
    direction: Direction = Direction.both, min_deviation: float = 0.0,
) -> FloatArray:
    """|z| / threshold, where z is the residual over the forecast's standard deviation as
    implied by the band under a normal assumption."""
    normal = NormalDist()
    spread = normal.inv_cdf(band[1]) - normal.inv_cdf(band[0])
    floor = _RELATIVE_WIDTH_FLOOR * np.maximum(np.abs(median), 1.0)
    sigma = np.maximum((upper - lower) / spread, floor)
    residual = actual - median
    return _finish(np.abs(residual) / sigma / threshold, residual, direction, min_deviation)


def _finish(
    result: FloatArray, residual: FloatArray, direction: Direction, min_deviation: float
) -> FloatArray:
    missing = ~np.isfinite(residual)
    if direction == Direction.above:
        result = np.where(residual < 0, 0.0, result)
    elif direction == Direction.below:
        result = np.where(residual > 0, 0.0, result)
    if min_deviation > 0:
        result = np.where(np.abs(residual) < min_deviation, 0.0, result)
    return np.where(missing, np.nan, result)
