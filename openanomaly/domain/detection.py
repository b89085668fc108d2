"""From raw interval scores to alarms that mean the same on every series.

A model's band is right for some series and too narrow for others: on a series that the
model forecasts poorly, a raw score of 3 is an ordinary hour. Three steps make the score
comparable across series, all causal and per series:

1. Compression: ``log1p(raw)``, so a few extreme points do not dominate what follows.
2. Calibration: divided by the series' own recent ``calibration_quantile`` of compressed
   scores, but never by less than 1: where the model's band is right, a point alarms once
   it is e - 1 (about 1.7) half-widths of the band from the median (a 10-90 % band leaves
   a fifth of ordinary points outside it); where the band is too narrow, the threshold
   rises to what is unusual for that series.
3. Suppression: after an alarm, a point alarms again only when it is stronger than every
   point of the previous ``suppression_window``, so one incident gives one alert rather
   than one per point; and where a point near the same time one season earlier would
   have alarmed, a point alarms only when ``recurring_margin`` times stronger than it, so
   a nightly job's spike alarms on its first night rather than every night. While the
   history is younger than the suppression window (a new pipeline, or one back after a
   long gap), the points it has not seen yet are stood in for by the largest score they
   would be expected to reach (``unseen_peak``): a record over a few hours is no alarm
   when an ordinary day beats it.

The history each step needs is a few numbers per series, the quantile and the maximum of
the raw scores before the points being scored, the suppression window's count and two
quantiles of them and their maximum near the same time a season earlier, so a database
computes them server-side (``quantile_over_time``, ``max_over_time`` and
``count_over_time`` of the raw score series) and an in-memory replay computes them from
its own past scores. Both then call ``calibrate``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.domain.rowstats import nanquantile_rows
from openanomaly.domain.series import FloatArray

# The smallest divisor: a raw score of e - 1 scores 1 on a series with a quiet history.
_MIN_SCALE = 1.0


# Quantiles of the raw scores that describe the tail of their distribution: the first is
# the threshold of the peaks-over-threshold fit, the others the points it is fitted to.
TAIL_LEVELS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998)
# Fewer exceedances of the first level than this and the fit falls back to the quantile.
_MIN_EXCEEDANCES = 30
# With this many points expected above the wanted level, its empirical quantile is used
# as it is; with fewer, the tail fit extrapolates to it.
_EMPIRICAL_POINTS = 3
# The rarest exceedance asked of the database's quantile (its level then comes from the fit).
_RAREST_QUANTILE = 0.9999
# The quantiles of the suppression window's raw scores from which ``unseen_peak``
# extrapolates: low enough that an incident in a young history (up to a tenth of its
# points) does not move them. And the fewest points it extrapolates from.
RECENT_LEVELS = (0.75, 0.9)
_UNSEEN_MIN_POINTS = 30
# The expected maximum of n exponential draws lies this many scales above their 1 - 1/n
# quantile (the Euler-Mascheroni constant).
_EULER = 0.5772156649015329


def exceedance_of(scoring: ScoringSpec, step_seconds: float) -> float | None:
    """The chance per point that an ordinary point scores above 1, from
    ``false_alarm_days`` (None: calibrate on ``calibration_quantile``)."""
    if scoring.false_alarm_days is None:
        return None
    return min(step_seconds / (scoring.false_alarm_days * 86400.0), 0.5)


def history_quantile(scoring: ScoringSpec, step_seconds: float) -> float:
    """The quantile of the raw-score history a run asks for: the level exceeded at the
    false-alarm rate, or ``calibration_quantile``."""
    exceedance = exceedance_of(scoring, step_seconds)
    if exceedance is None:
        return scoring.calibration_quantile
    return min(1.0 - exceedance, _RAREST_QUANTILE)


@dataclass(frozen=True)
class ScoreHistory:
    """Per series, over the raw scores before the points being scored (NaN if none)."""

    quantile: FloatArray
    """The calibration quantile of the raw scores over the calibration window."""
    peak: FloatArray
    """The largest raw score over the suppression window."""
    tail: FloatArray | None = None
    """(n_series, len(TAIL_LEVELS)): the raw scores' quantiles at ``TAIL_LEVELS`` over the
    calibration window (None: calibrate on ``quantile`` alone)."""
    count: FloatArray | None = None
    """Raw scores in the calibration window."""
    recurring: FloatArray | None = None
    """The largest raw score near the same time one season earlier (see
    ``RecurringSpan``); None or NaN: not looked at."""
    recent: FloatArray | None = None
    """(n_series, len(RECENT_LEVELS)): the raw scores' quantiles at ``RECENT_LEVELS`` over
    the suppression window where it holds fewer raw scores than points (see
    ``unseen_peak``; NaN: a full window; None: not looked at)."""
    recent_count: FloatArray | None = None
    """Raw scores in the suppression window, where fewer than its points (NaN: a full
    window; None: not looked at)."""

    def rows(self, index: slice | npt.NDArray[np.integer]) -> ScoreHistory:
        """The history of some of the series."""
        def pick(values: FloatArray | None) -> FloatArray | None:
            return None if values is None else values[index]

        return ScoreHistory(self.quantile[index], self.peak[index], pick(self.tail),
                            pick(self.count), pick(self.recurring), pick(self.recent),
                            pick(self.recent_count))


@dataclass(frozen=True)
class StoredScoreStats:
    """What a database computes over the raw scores one output series holds."""

    labels: dict[str, str]
    """The output series' labels, without ``__name__``."""
    quantile: float
    peak: float
    tail: tuple[float, ...] = ()
    """Quantiles at ``TAIL_LEVELS`` (empty: not asked for)."""
    count: float = math.nan
    recurring: float = math.nan
    """The largest raw score over the recurring span (NaN: not asked for)."""
    recent: tuple[float, ...] = ()
    """Quantiles at ``RECENT_LEVELS`` over the peak window (NaN where it was full; empty:
    not asked for)."""
    recent_count: float = math.nan
    """Samples in the peak window (NaN where it was full, or not asked for)."""


@dataclass(frozen=True)
class Calibrated:
    score: FloatArray
    """(n_series, n_points): above 1 is an alarm."""
    band_factor: FloatArray
    """(n_series,): how much wider than the model's band the calibrated band is; its
    edges are where an unsuppressed point scores exactly 1."""


def _compressed(statistic: FloatArray) -> FloatArray:
    """``log1p`` of a history's raw-score statistic, NaN (no history) as 0."""
    return np.log1p(np.maximum(np.nan_to_num(statistic, nan=0.0), 0.0))


def scale_of(quantile: FloatArray) -> FloatArray:
    """The divisor of compressed scores for a history quantile (NaN: no history yet)."""
    return np.maximum(_compressed(quantile), _MIN_SCALE)


# Shape parameters tried by the tail fit: from a bounded tail (< 0) through the
# exponential (0) to a heavy one; compressed scores rarely leave this range.
_SHAPES = np.linspace(-0.5, 0.5, 41)


def tail_level(tail: FloatArray, count: FloatArray, exceedance: float) -> FloatArray:
    """The compressed score that a series' own history exceeds with probability
    ``exceedance`` per point: a generalised Pareto distribution fitted to the tail of its
    compressed raw scores above the ``TAIL_LEVELS[0]`` quantile (peaks over threshold),
    through the higher quantiles. NaN where the history holds too few exceedances.

    The fit is least squares on the quantiles, one shape at a time over a grid, with the
    scale in closed form: vectorised over series, no iteration that could fail to converge.
    """
    compressed = np.log1p(np.maximum(tail, 0.0))
    base = compressed[:, 0]
    excess = compressed[:, 1:] - base[:, None]
    above = 1.0 - TAIL_LEVELS[0]
    # log of (probability above the base) / (probability above each fitted quantile)
    ratios = np.log(above / (1.0 - np.asarray(TAIL_LEVELS[1:])))
    target = math.log(above / exceedance) if exceedance < above else 0.0

    def growth(ratio: FloatArray | float) -> FloatArray:
        """The quantile's distance above the base, in units of the scale, per shape."""
        shape = _SHAPES[:, None]
        safe = np.where(np.abs(shape) < 1e-9, 1.0, shape)
        return np.where(np.abs(shape) < 1e-9, ratio, np.expm1(safe * ratio) / safe)

    basis = growth(ratios)  # (shapes, levels)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(excess @ basis.T / np.sum(basis * basis, axis=1), 0.0)
        errors = np.sum((excess[:, None, :] - scale[:, :, None] * basis[None]) ** 2, axis=2)
    best = np.argmin(np.nan_to_num(errors, nan=np.inf), axis=1)
    rows = np.arange(tail.shape[0])
    level = base + scale[rows, best] * growth(target)[best, 0]
    enough = (count * above >= _MIN_EXCEEDANCES) & np.all(np.isfinite(compressed), axis=1)
    return np.where(enough, level, np.nan)


def calibration_scale(history: ScoreHistory, exceedance: float | None) -> FloatArray:
    """The divisor of compressed scores, never below the floor: with ``exceedance``, the
    history's own quantile at that rate where it holds enough points above it, else the
    tail fit's extrapolation where it holds enough for a fit; otherwise (and without
    ``exceedance``) the history's quantile as it is."""
    scale = scale_of(history.quantile)
    if exceedance is None or history.tail is None or history.count is None:
        return scale
    level = tail_level(history.tail, history.count, exceedance)
    extrapolate = np.isfinite(level) & (history.count * exceedance < _EMPIRICAL_POINTS)
    return np.where(extrapolate, np.maximum(level, _MIN_SCALE), scale)


def unseen_peak(history: ScoreHistory, points: int) -> FloatArray | None:
    """Per series, the compressed raw score that the points of a suppression window of
    ``points`` which the history does not hold would be expected to reach at their
    largest; NaN where the history holds the whole window or too little of it to tell,
    None without the statistics for it.

    The tail of compressed scores is taken as exponential above the window's
    ``RECENT_LEVELS`` quantiles, its scale read off the distance between them; the
    expected maximum of k draws from it lies that scale times ln(k (1 - q)) + Euler's
    constant above its q quantile. Most scores' tails fall off faster than an
    exponential, so this errs high: a young history holds back more rather than less.
    """
    if history.recent is None or history.recent_count is None or points <= 0:
        return None
    low, high = RECENT_LEVELS
    lower, upper = _compressed(history.recent[:, 0]), _compressed(history.recent[:, 1])
    scale = np.maximum(upper - lower, 0.0) / math.log((1.0 - low) / (1.0 - high))
    count = np.nan_to_num(history.recent_count, nan=0.0)
    unseen = points - count
    expected = upper + scale * (np.log(np.maximum(unseen, 1.0) * (1.0 - high)) + _EULER)
    young = ((unseen > 0) & (count >= _UNSEEN_MIN_POINTS)
             & np.all(np.isfinite(history.recent), axis=1))
    return np.where(young, expected, np.nan)


def calibrate(raw: FloatArray, history: ScoreHistory, suppress: bool = True,
              exceedance: float | None = None, realarm_margin: float = 1.0,
              recurring_margin: float = 1.0, unseen: FloatArray | None = None,
              ) -> Calibrated:
    """Calibrated (and, with ``suppress``, de-duplicated) scores of ``raw`` (n, m).

    ``exceedance``: the chance per point that an ordinary point of the series scores above
    1 (from the tail fit, see ``tail_level``); None calibrates on the quantile alone.
    ``realarm_margin``: after a point that alarmed, how many times stronger than it a
    later point must be to alarm again (1: merely stronger).
    ``recurring_margin``: where the history's ``recurring`` peak would have alarmed, how
    many times stronger than it a point must be to alarm.
    ``unseen``: per series, the compressed peak that stands in for the part of the
    suppression window the history lacks (see ``unseen_peak``; NaN: none)."""
    scale = calibration_scale(history, exceedance)
    with np.errstate(invalid="ignore"):
        level = np.log1p(np.maximum(raw, 0.0)) / scale[:, None]
    band_factor = np.expm1(scale)
    if not suppress:
        return Calibrated(level, band_factor)
    earlier = _compressed(history.peak)
    if unseen is not None:
        earlier = np.fmax(earlier, unseen)
    earlier = earlier / scale
    # Strongest point before each point: the history's peak, then the running maximum of
    # the points already scored in this call (NaN points do not count).
    running = np.maximum.accumulate(np.nan_to_num(level, nan=0.0), axis=1)
    before = np.concatenate([earlier[:, None], running[:, :-1]], axis=1)
    before = np.maximum(before, earlier[:, None])
    # Only a point that alarmed (1 or more) raises the bar for the next by the margin.
    before = np.where(before >= 1.0, before * realarm_margin, before)
    if history.recurring is not None:
        again = _compressed(history.recurring) / scale
        # Only what would have alarmed then raises the bar now: an ordinary day before
        # changes nothing.
        again = np.where(again >= 1.0, recurring_margin * again, 0.0)
        before = np.maximum(before, again[:, None])
    return Calibrated(level / np.maximum(before, 1.0), band_factor)


def history_of(past: FloatArray, quantile: float, calibration_points: int,
               suppression_points: int) -> ScoreHistory:
    """ScoreHistory from past raw scores held in memory, (n, t) oldest first: the same
    statistics a database returns over the same windows."""
    window = past[:, -calibration_points:] if calibration_points > 0 else past[:, :0]
    recent = past[:, -suppression_points:] if suppression_points > 0 else past[:, :0]
    n = past.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, on purpose
        if window.shape[1]:
            levels = nanquantile_rows(window, (quantile, *TAIL_LEVELS)).T
        else:
            levels = np.full((n, 1 + len(TAIL_LEVELS)), np.nan)
        peak = (np.nanmax(recent, axis=1) if recent.shape[1] else np.full(n, np.nan))
        recent_levels, recent_count = _unfilled(recent, suppression_points)
    count = np.sum(np.isfinite(window), axis=1).astype(float)
    return ScoreHistory(np.asarray(levels[:, 0], dtype=float), np.asarray(peak, dtype=float),
                        np.asarray(levels[:, 1:], dtype=float), count,
                        recent=recent_levels, recent_count=recent_count)


def _unfilled(recent: FloatArray, points: int) -> tuple[FloatArray, FloatArray]:
    """The ``RECENT_LEVELS`` quantiles and the count of the raw scores in a suppression
    window of ``points``, computed only for the series whose window holds fewer, NaN for
    the others (as a database asked only about those answers)."""
    count = np.sum(np.isfinite(recent), axis=1).astype(float)
    young = count < points
    levels = np.full((recent.shape[0], len(RECENT_LEVELS)), np.nan)
    if recent.shape[1] and young.any():
        levels[young] = nanquantile_rows(recent[young], RECENT_LEVELS).T
    return levels, np.where(young, count, np.nan)


def window_points(seconds: float | None, step_seconds: float) -> int:
    """Points of a calibration or suppression window on a step grid (0: no window)."""
    return 0 if seconds is None else max(1, round(seconds / step_seconds))


@dataclass(frozen=True)
class RecurringSpan:
    """Where the same time one season earlier lies, in points: the window's own points a
    season back, widened by ``tolerance`` on both sides (a nightly job starts a little
    earlier or later from one night to the next)."""

    season: int
    tolerance: int

    @classmethod
    def of(cls, scoring: ScoringSpec, step_seconds: float) -> RecurringSpan | None:
        if scoring.recurring_tolerance is None or scoring.calibration_window is None:
            return None
        return cls(window_points(scoring.season, step_seconds),
                   round(scoring.recurring_tolerance / step_seconds))

    @property
    def reach(self) -> int:
        """Points of history back to the span's first, from a window's first point."""
        return self.season + self.tolerance

    def columns(self, start: int, width: int) -> tuple[int, int]:
        """[first, last) of the span for a window of ``width`` points whose first is
        column ``start`` of the history, cut to the history before it."""
        first = max(0, start - self.reach)
        return first, max(first, min(start, start + width - self.season + self.tolerance))

    def time_range(self, start_ms: int, width: int, step_ms: int) -> tuple[int, int]:
        """The span of a window of ``width`` points from ``start_ms`` as a database
        selects it: (end_ms, range_ms), the samples in (end - range, end]."""
        first, last = self.columns(self.reach, width)
        return start_ms + (last - self.reach) * step_ms - 1, (last - first) * step_ms


def _row_max(values: FloatArray) -> FloatArray:
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, on purpose
        return np.asarray(np.nanmax(values, axis=1), dtype=float)


def running_history(scoring: ScoringSpec, step_seconds: float,
                    past: FloatArray) -> RunningHistory | None:
    """The in-memory history of a pipeline's scoring (None without calibration)."""
    if scoring.calibration_window is None:
        return None
    return RunningHistory(past, history_quantile(scoring, step_seconds),
                          window_points(scoring.calibration_window, step_seconds),
                          window_points(scoring.suppression_window, step_seconds),
                          RecurringSpan.of(scoring, step_seconds))


def history_points(scoring: ScoringSpec, step_seconds: float) -> int:
    """Points of raw-score history the calibration reads before a window."""
    return _points_read(window_points(scoring.calibration_window, step_seconds),
                        window_points(scoring.suppression_window, step_seconds),
                        RecurringSpan.of(scoring, step_seconds))


def _points_read(calibration_points: int, suppression_points: int,
                 recurring: RecurringSpan | None) -> int:
    return max(calibration_points, suppression_points,
               recurring.reach if recurring is not None else 0)


class RunningHistory:
    """ScoreHistory for windows scored in time order, from raw scores held in memory: the
    ``past`` before the first window (n, t) oldest first, then each window's own raw
    scores, as successive live runs would find them in the database."""

    def __init__(self, past: FloatArray, quantile: float, calibration_points: int,
                 suppression_points: int, recurring: RecurringSpan | None = None) -> None:
        self.quantile = quantile
        self.calibration = calibration_points
        self.suppression = suppression_points
        self.recurring = recurring
        self.keep = _points_read(calibration_points, suppression_points, recurring)
        self.past = self._recent(past)

    def next_window(self, raw: FloatArray) -> ScoreHistory:
        """The history before ``raw`` (n, m), which then joins the past."""
        history = history_of(self.past, self.quantile, self.calibration, self.suppression)
        if self.recurring is not None:
            first, last = self.recurring.columns(self.past.shape[1], raw.shape[1])
            history = replace(history, recurring=_row_max(self.past[:, first:last]))
        self.past = self._recent(np.concatenate([self.past, raw], axis=1))
        return history

    def _recent(self, past: FloatArray) -> FloatArray:
        return past[:, max(0, past.shape[1] - self.keep):]
