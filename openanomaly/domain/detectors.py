"""Detectors beside the forecast residual, for anomalies a forecast's band adapts to.

A model that forecasts from the recent past follows a series into most kinds of trouble:
its band widens when the series gets noisy, it forecasts a frozen value to stay frozen,
it bends with a slow ramp. Each detector here compares the window being checked with the
series' own context in a way the band cannot absorb:

- ``frozen``: the series stops moving for longer than it ever stood still in its context;
- ``seasonal``: the level against the same time in earlier seasons (a seasonal request
  rate that drops by half at an hour when it never does);
- ``drift``: the change between consecutive windows of an hour and of four hours, against
  how much such windows change in the context (a latency creeping up, memory leaking);
- ``variance``: the step-to-step spread of the last half hour against its context.

Each gives a statistic per point that is measured against the same statistic over the
context (its distance from the context's median, in units of the distance the context
exceeds once in a hundred points), so it means the same on every series.
``detector_scores`` turns it into the interval score's units: twice the context's extreme
scores e - 1, the calibrated alarm level on a quiet series. The check takes the largest
raw score of the residual and the detectors, then calibrates that, so a detector that is
noisy on some series raises only that series' threshold.

All is causal: a point's statistic uses values up to and including it; the baseline is
the context alone. Arrays are (series, points); NaN is a missing value.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from enum import StrEnum

import numpy as np

from openanomaly.domain.rowstats import nanmedian_rows, nanquantile_rows
from openanomaly.domain.series import FloatArray


class Detector(StrEnum):
    frozen = "frozen"
    seasonal = "seasonal"
    drift = "drift"
    variance = "variance"


# The quantile of a statistic's distance from its median over the context that is the
# unit of its standardised value.
_EXTREME = 0.99
# Raw scores grow exponentially past the context's extreme: twice as far out scores e - 1
# (an alarm on a quiet series), three times 6.4 and no more, so that one long incident does
# not out-shout every alarm of the next day under suppression (a larger cap lost NAB hits).
_MAX_EXCESS = 2.0
# Smoothing scales of the seasonal comparison (one point, then a quarter hour).
_SEASONAL_SMOOTHING = 900.0
# At most this many earlier seasons form the seasonal reference.
_MAX_SEASONS = 7
# Window lengths of the drift statistic (an hour, four hours).
_DRIFT_SCALES = (3600.0, 4 * 3600.0)
# Window of the variance statistic, and its fewest points.
_VARIANCE_WINDOW = 1800.0
_VARIANCE_MIN_POINTS = 6
# The smallest unit of the variance statistic (a log): a half hour's spread varies about
# this much by sampling alone, even where most half hours look alike.
_MIN_LOG_SPREAD = 0.7
# A change below this fraction of the series' noise level counts as standing still.
_FROZEN_TOLERANCE = 0.01
# Rows per batch: the seasonal reference holds (seasons x rows x points) floats.
_CHUNK_ROWS = 512
# A baseline needs this many known values of its statistic.
_MIN_BASELINE = 16


def detector_scores(
    contexts: FloatArray, actuals: FloatArray, step_seconds: float,
    detectors: Iterable[Detector], direction: str = "both", season_seconds: float = 86400.0,
) -> dict[Detector, FloatArray]:
    """Raw scores (n, m) of each detector for the ``actuals`` after ``contexts`` (n, c).

    ``direction`` (both, above, below) applies to the signed detectors (seasonal, drift);
    a detector without enough context for its baseline scores 0, a missing actual NaN.
    """
    wanted = list(dict.fromkeys(Detector(d) for d in detectors))
    n, m = actuals.shape
    out = {d: np.zeros((n, m)) for d in wanted}
    c = contexts.shape[1]
    for start in range(0, n, _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        full = np.concatenate([contexts[rows], actuals[rows]], axis=1).astype(float)
        for detector in wanted:
            ratio = _STATISTICS[detector](full, c, step_seconds, direction, season_seconds)
            out[detector][rows] = _to_raw(ratio)
    missing = ~np.isfinite(actuals)
    return {d: np.where(missing, np.nan, s) for d, s in out.items()}


def combined(scores: dict[Detector, FloatArray], shape: tuple[int, int]) -> FloatArray:
    """The largest detector score per point (0 with no detector)."""
    if not scores:
        return np.zeros(shape)
    return np.asarray(np.fmax.reduce(list(scores.values())))


def _to_raw(ratio: FloatArray) -> FloatArray:
    excess = np.clip(np.nan_to_num(ratio, nan=0.0) - 1.0, 0.0, _MAX_EXCESS)
    return np.expm1(excess)


# -- the statistics: each takes the context followed by the window, (n, c + m), and the
# context's length c, and returns for the window's m points a ratio where 1 is as far out
# as the context goes (see _standardised) and 2 alarms on a quiet series.


def _frozen(full: FloatArray, c: int, step: float, direction: str,
            season: float) -> FloatArray:
    """How many steps longer than ever in the context the series has stood still, as a
    ratio: on a series that never stands still, three steps give 2 (raw e - 1) and five
    give 3 (raw 6.4, the cap)."""
    tolerance = _FROZEN_TOLERANCE * _noise(full[:, :c])
    with np.errstate(invalid="ignore"):
        still = np.abs(np.diff(full, axis=1)) <= tolerance[:, None]
    run = _run_lengths(still)  # (n, c + m - 1): steps still, ending at each point
    longest = run[:, :c - 1].max(axis=1) if c > 1 else np.zeros(full.shape[0])
    excess = run[:, c - 1:] - longest[:, None]
    # A series that stood still through all of its known context is constant, not frozen.
    first_known = np.argmax(np.isfinite(full[:, :c]), axis=1)
    constant = (c > 1) & (run[:, c - 2] >= c - 1 - first_known)
    excess = np.where(constant[:, None], 0.0, excess)
    # Longer standstills are rarer: allow a quarter more for a series that often pauses.
    allowed = 1.0 + 0.25 * longest
    return np.asarray(1.0 + np.maximum(excess - 1.0, 0.0) / (2.0 * allowed[:, None]),
                      dtype=float)


def _seasonal(full: FloatArray, c: int, step: float, direction: str,
              season: float) -> FloatArray:
    """The level against the median of the same time in up to seven earlier seasons,
    at one point and smoothed over a quarter hour, standardised on the context."""
    period = round(season / step)
    seasons = min(_MAX_SEASONS, (c - 1) // period) if period >= 2 else 0
    m = full.shape[1] - c
    if seasons == 0:
        return np.zeros((full.shape[0], m))
    shifted = np.full((seasons, *full.shape), np.nan)
    for k in range(1, seasons + 1):
        shifted[k - 1, :, k * period:] = full[:, :-k * period]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points give NaN
        reference = np.nanmedian(shifted, axis=0)
    residual = full - reference
    best = np.zeros((full.shape[0], m))
    for points in sorted({1, max(1, round(_SEASONAL_SMOOTHING / step))}):
        smooth = _rolling_mean(residual, points)
        best = np.fmax(best, _signed(_standardised(smooth, c, period), direction))
    return best


def _drift(full: FloatArray, c: int, step: float, direction: str,
           season: float) -> FloatArray:
    """The mean of the last window minus the mean of the window before it, for windows
    of an hour and of four hours, standardised on the context."""
    m = full.shape[1] - c
    best = np.zeros((full.shape[0], m))
    for seconds in _DRIFT_SCALES:
        points = max(2, round(seconds / step))
        if 4 * points > c:
            continue
        mean = _rolling_mean(full, points)
        change = np.full_like(mean, np.nan)
        change[:, points:] = mean[:, points:] - mean[:, :-points]
        best = np.fmax(best, _signed(_standardised(change, c, 2 * points), direction))
    return best


def _variance(full: FloatArray, c: int, step: float, direction: str,
              season: float) -> FloatArray:
    """The log of the mean absolute step-to-step change over the last half hour,
    standardised on the context (only a rise: a collapse is ``frozen``)."""
    points = max(_VARIANCE_MIN_POINTS, round(_VARIANCE_WINDOW / step))
    changes = np.abs(np.diff(full, axis=1))
    spread = _rolling_mean(changes, points)
    # Half hours when a sparse series stands still count as a tenth of its usual change,
    # so its bursts are measured against that rather than against zero.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        usual = np.nanmean(changes[:, :c - 1], axis=1, keepdims=True)
    floor = np.maximum(np.nan_to_num(0.1 * usual, nan=0.0), 1e-300)
    with np.errstate(invalid="ignore"):
        level = np.log(np.maximum(spread, floor))
    level = np.concatenate([np.full((full.shape[0], 1), np.nan), level], axis=1)
    return np.maximum(_standardised(level, c, points + 1, _MIN_LOG_SPREAD), 0.0)


_STATISTICS = {
    Detector.frozen: _frozen,
    Detector.seasonal: _seasonal,
    Detector.drift: _drift,
    Detector.variance: _variance,
}


# -- helpers


def _noise(context: FloatArray) -> FloatArray:
    """The median absolute step-to-step change (0 for a series that mostly stands still)."""
    return np.asarray(np.nan_to_num(nanmedian_rows(np.abs(np.diff(context, axis=1)))),
                      dtype=float)


def _run_lengths(flags: np.ndarray) -> np.ndarray:
    """Per position, how many consecutive True end there (0 where False)."""
    n, length = flags.shape
    index = np.broadcast_to(np.arange(1, length + 1), (n, length))
    last_false = np.maximum.accumulate(np.where(flags, 0, index), axis=1)
    return index - last_false


def _rolling_mean(values: FloatArray, points: int) -> FloatArray:
    """Trailing mean over ``points`` (NaN where fewer than half are known)."""
    if points <= 1:
        return values.copy()
    known = np.isfinite(values)
    sums = np.cumsum(np.where(known, values, 0.0), axis=1)
    counts = np.cumsum(known, axis=1)
    pad = np.zeros((values.shape[0], 1))
    sums = np.concatenate([pad, sums], axis=1)
    counts = np.concatenate([pad, counts], axis=1)
    total = sums[:, points:] - sums[:, :-points]
    count = counts[:, points:] - counts[:, :-points]
    mean = np.full(values.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean[:, points - 1:] = np.where(count >= points / 2, total / count, np.nan)
    return mean


def _standardised(statistic: FloatArray, c: int, skip: int,
                  min_spread: float = 0.0) -> FloatArray:
    """The window's values of ``statistic`` (its columns after ``c``) measured against
    the statistic over the context (ignoring its first ``skip`` columns, which lean on
    values before the context): the distance from the context's median in units of the
    context's own ``_EXTREME`` quantile of that distance, so 1 is as far out as the
    context goes once in a hundred points. NaN where the baseline is too short."""
    baseline = statistic[:, min(skip, c):c]
    centre = nanmedian_rows(baseline)
    spread = nanquantile_rows(np.abs(baseline - centre[:, None]), _EXTREME)
    enough = np.sum(np.isfinite(baseline), axis=1) >= _MIN_BASELINE
    # A baseline that never moves still has float rounding: changes below it mean nothing.
    floor = 1e-6 * np.maximum(np.abs(np.nan_to_num(centre)), 1e-12)
    spread = np.maximum(np.nan_to_num(spread), np.maximum(floor, min_spread))
    with np.errstate(invalid="ignore"):
        z = (statistic[:, c:] - centre[:, None]) / spread[:, None]
    return np.where(enough[:, None], z, np.nan)


def _signed(z: FloatArray, direction: str) -> FloatArray:
    if direction == "above":
        return np.maximum(z, 0.0)
    if direction == "below":
        return np.maximum(-z, 0.0)
    return np.abs(z)


def needed_context_seconds(detector: Detector, season_seconds: float,
                           step_seconds: float) -> float:
    """The shortest context in which a detector scores anything: its statistic's own
    reach back, then ``_MIN_BASELINE`` values of it."""
    def points(seconds: float, least: int = 1) -> int:
        return max(least, round(seconds / step_seconds))

    if detector == Detector.seasonal:
        needed = points(season_seconds) + _MIN_BASELINE
    elif detector == Detector.drift:
        window = points(_DRIFT_SCALES[0], 2)
        needed = max(4 * window, 2 * window + _MIN_BASELINE)
    elif detector == Detector.variance:
        needed = points(_VARIANCE_WINDOW, _VARIANCE_MIN_POINTS) + 1 + _MIN_BASELINE
    else:
        needed = 2
    return needed * step_seconds
