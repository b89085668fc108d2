"""Anomaly scores of actual values against a quantile forecast.

The interval score is 0 where the actual equals the median forecast, 1 at the band edge
and above 1 outside the band. NaN actuals or forecasts give NaN scores, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from openanomaly.domain.forecast import QuantileForecast
from openanomaly.domain.pipeline import Direction, ScoringSpec, Technique
from openanomaly.domain.rowstats import nanmedian_rows
from openanomaly.domain.series import FloatArray

# A band narrower than this (relative to the median's magnitude) is treated as this wide.
# Models compute in float32, whose resolution is about 6e-8 of the value: a narrower band
# is rounding noise, and would make a constant series (up == 1) alarm on it. Real changes
# of a flat series still score far above 1.
_RELATIVE_WIDTH_FLOOR = 1e-6
# Fewer known values than this and a context is not taken for counts.
_MIN_COUNT_POINTS = 16


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
    centre = nanmedian_rows(changes)[:, None]  # NaN for a row without changes, on purpose
    mad = nanmedian_rows(np.abs(changes - centre))
    return np.asarray(1.4826 * mad / np.sqrt(2.0))


def counts_like(context: FloatArray) -> npt.NDArray[np.bool_]:
    """Per series: its context holds only non-negative whole numbers (events, requests,
    errors counted per step), so it carries at least counting noise."""
    finite = np.isfinite(context)
    with np.errstate(invalid="ignore"):
        whole = (~finite) | ((context >= 0) & (context == np.round(context)))
    return np.asarray(np.all(whole, axis=1) & (finite.sum(axis=1) >= _MIN_COUNT_POINTS))


def score(
    spec: ScoringSpec, actual: FloatArray, forecast: QuantileForecast,
    noise: FloatArray | None = None, counts: npt.NDArray[np.bool_] | None = None,
) -> Scored:
    """Score ``actual`` (n_series, n_steps) against the first n_steps of ``forecast``.

    ``noise`` (one value per series, see ``noise_level``) sets the band's minimum width
    when ``spec.noise_floor`` is positive; for series flagged in ``counts`` (see
    ``counts_like``) that minimum is at least the counting noise at the forecast's level,
    the square root of the median (a Poisson count's standard deviation).
    """
    steps = actual.shape[1]
    median = forecast.at(0.5)[:, :steps]
    # Values near the float limits overflow in differences (to ±inf, never NaN): the band
    # then reaches infinity, and the score is computed on scaled values below.
    with np.errstate(over="ignore", invalid="ignore"):
        below = spec.band_scale * (median - forecast.at(spec.band[0])[:, :steps])
        above = spec.band_scale * (forecast.at(spec.band[1])[:, :steps] - median)
        if spec.noise_floor > 0 and noise is not None:
            spread = np.broadcast_to(np.nan_to_num(noise, nan=0.0)[:, None], median.shape)
            if counts is not None and spec.count_noise:
                counting = np.sqrt(np.maximum(np.nan_to_num(median, nan=0.0), 1.0))
                spread = np.where(counts[:, None], np.maximum(spread, counting), spread)
            floor = spec.noise_floor * spread
            below = np.maximum(below, floor)
            above = np.maximum(above, floor)
        lower = median - below
        upper = median + above
    # Scores are ratios: computed on values divided by their magnitude, so no difference
    # overflows whatever finite numbers come in.
    unit = _point_unit(actual, median, lower, upper)
    scaled = (actual / unit, median / unit, lower / unit, upper / unit)
    if spec.technique == Technique.interval:
        values = interval_score(*scaled, spec.direction, spec.min_deviation / unit, 1 / unit)
    else:
        values = zscore_score(
            *scaled, spec.band, spec.zscore_threshold,
            spec.direction, spec.min_deviation / unit, 1 / unit,
        )
    return Scored(values, median, lower, upper)


def _point_unit(*parts: FloatArray) -> FloatArray:
    """The largest finite magnitude among ``parts`` at each point, at least 1 (per point,
    so no point's score depends on another's values, even in its last digit)."""
    magnitudes = [np.where(np.isfinite(part), np.abs(part), 0.0) for part in parts]
    unit: FloatArray = np.maximum(np.max(magnitudes, axis=0), 1.0)
    return unit


def interval_score(
    actual: FloatArray, median: FloatArray, lower: FloatArray, upper: FloatArray,
    direction: Direction = Direction.both, min_deviation: float | FloatArray = 0.0,
    unit: float | FloatArray = 1.0,
) -> FloatArray:
    """``unit``: what 1 of the original values is in these (scaled) ones."""
    residual = actual - median
    floor = _RELATIVE_WIDTH_FLOOR * np.maximum(np.abs(median), unit)
    with np.errstate(invalid="ignore"):
        above = residual / np.maximum(upper - median, floor)
        below = -residual / np.maximum(median - lower, floor)
        result = np.where(residual >= 0, above, below)
    return _finish(result, residual, direction, min_deviation)


def zscore_score(
    actual: FloatArray, median: FloatArray, lower: FloatArray, upper: FloatArray,
    band: tuple[float, float], threshold: float,
    direction: Direction = Direction.both, min_deviation: float | FloatArray = 0.0,
    unit: float | FloatArray = 1.0,
) -> FloatArray:
    """|z| / threshold, where z is the residual over the forecast's standard deviation as
    implied by the band under a normal assumption."""
    normal = NormalDist()
    spread = normal.inv_cdf(band[1]) - normal.inv_cdf(band[0])
    floor = _RELATIVE_WIDTH_FLOOR * np.maximum(np.abs(median), unit)
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = np.maximum((upper - lower) / spread, floor)
    residual = actual - median
    return _finish(np.abs(residual) / sigma / threshold, residual, direction, min_deviation)


def _finish(
    result: FloatArray, residual: FloatArray, direction: Direction,
    min_deviation: float | FloatArray,
) -> FloatArray:
    missing = ~np.isfinite(residual)
    if direction == Direction.above:
        result = np.where(residual < 0, 0.0, result)
    elif direction == Direction.below:
        result = np.where(residual > 0, 0.0, result)
    if np.any(np.asarray(min_deviation) > 0):
        result = np.where(np.abs(residual) < min_deviation, 0.0, result)
    return np.where(missing, np.nan, result)
