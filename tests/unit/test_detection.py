"""The detection stage: compression, calibration against a series' own history, and
suppression of repeated alarms."""

import math
from dataclasses import replace

import numpy as np
import pytest

from openanomaly.domain.detection import (
    TAIL_LEVELS,
    RecurringSpan,
    RunningHistory,
    ScoreHistory,
    calibrate,
    calibration_scale,
    history_of,
    scale_of,
    tail_level,
    unseen_peak,
)

NO_HISTORY = ScoreHistory(np.array([np.nan]), np.array([np.nan]))


def test_without_history_a_point_scores_1_at_raw_e_minus_1():
    out = calibrate(np.array([[0.0, math.e - 1, 10.0]]), NO_HISTORY, suppress=False)
    assert out.score[0] == pytest.approx([0.0, 1.0, math.log1p(10.0)])
    assert out.band_factor[0] == pytest.approx(math.e - 1)


def test_a_series_with_large_ordinary_scores_is_judged_against_them():
    # This series' raw scores reach 20 on an ordinary day: 20 is not an alarm, 400 is.
    history = ScoreHistory(np.array([20.0]), np.array([np.nan]))
    out = calibrate(np.array([[20.0, 400.0]]), history, suppress=False)
    assert out.score[0, 0] == pytest.approx(1.0)
    assert out.score[0, 1] == pytest.approx(math.log1p(400) / math.log1p(20))
    assert out.band_factor[0] == pytest.approx(20.0)


def test_a_quiet_history_never_lowers_the_threshold_below_the_floor():
    assert scale_of(np.array([0.1, np.nan]))[0] == pytest.approx(1.0)
    assert scale_of(np.array([0.1, np.nan]))[1] == pytest.approx(1.0)


def test_suppression_keeps_the_first_alarm_of_a_burst_and_stronger_ones():
    raw = np.array([[0.5, 9.0, 8.0, 9.0, 30.0, 2.0]])
    out = calibrate(raw, NO_HISTORY, suppress=True)
    alarms = out.score[0] > 1
    assert alarms.tolist() == [False, True, False, False, True, False]


def test_a_realarm_margin_keeps_a_slowly_worsening_incident_to_one_alarm():
    # Levels log1p(raw): 2.30, 2.40, 2.64, 3.43: each a new peak, the last 30 % above.
    raw = np.array([[9.0, 10.0, 13.0, 30.0]])
    merely_stronger = calibrate(raw, NO_HISTORY, suppress=True)
    assert (merely_stronger.score[0] > 1).tolist() == [True, True, True, True]
    with_margin = calibrate(raw, NO_HISTORY, suppress=True, realarm_margin=1.2)
    assert (with_margin.score[0] > 1).tolist() == [True, False, False, True]
    # The first alarm, with nothing alarming before it, is not held back by the margin.
    assert with_margin.score[0, 0] == pytest.approx(merely_stronger.score[0, 0])


def test_a_peak_in_the_history_suppresses_weaker_points():
    history = ScoreHistory(np.array([np.nan]), np.array([50.0]))
    out = calibrate(np.array([[10.0, 60.0]]), history, suppress=True)
    assert (out.score[0] > 1).tolist() == [False, True]


def test_nan_points_stay_nan_and_do_not_suppress():
    out = calibrate(np.array([[np.nan, 9.0]]), NO_HISTORY, suppress=True)
    assert math.isnan(out.score[0, 0])
    assert out.score[0, 1] > 1


def test_history_from_memory_uses_only_the_windows():
    past = np.array([[100.0, 1.0, 2.0, 3.0, np.nan]])
    history = history_of(past, 0.5, calibration_points=4, suppression_points=2)
    assert history.quantile[0] == pytest.approx(2.0)  # median of 1, 2, 3 (NaN ignored)
    assert history.peak[0] == pytest.approx(3.0)
    empty = history_of(np.zeros((2, 0)), 0.99, 10, 10)
    assert np.isnan(empty.quantile).all() and np.isnan(empty.peak).all()


def _tail_history(raw: np.ndarray) -> ScoreHistory:
    """The statistics a database returns over ``raw`` (n, t), as history_of computes them."""
    return history_of(raw, 0.99, raw.shape[1], 1)


def test_tail_fit_extrapolates_an_exponential_tail():
    # Compressed scores log1p(raw) ~ Exp(1): the level exceeded with probability p is -ln p,
    # beyond anything the 20,000 points hold for p = 1e-5 (1-minute steps, 70 days).
    rng = np.random.default_rng(3)
    raw = np.expm1(rng.exponential(1.0, size=(4, 20_000)))
    history = _tail_history(raw)
    for p in (1e-3, 1e-4, 1e-5):
        level = tail_level(history.tail, history.count, p)
        np.testing.assert_allclose(level, -math.log(p), rtol=0.15)


def test_tail_fit_follows_a_bounded_tail_and_a_heavy_one():
    rng = np.random.default_rng(5)
    bounded = np.expm1(rng.uniform(0.0, 4.0, size=(1, 20_000)))  # never above 4
    heavy = np.expm1(rng.pareto(3.0, size=(1, 20_000)))  # shape 1/3 in compressed units
    low = tail_level(*_tail_args(bounded), 1e-5)
    high = tail_level(*_tail_args(heavy), 1e-5)
    assert 3.8 < low[0] < 4.4
    assert high[0] > 2 * np.quantile(np.log1p(heavy), 0.998)


def _tail_args(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    history = _tail_history(raw)
    assert history.tail is not None and history.count is not None
    return history.tail, history.count


def test_tail_fit_needs_enough_exceedances_and_then_replaces_the_quantile():
    rng = np.random.default_rng(7)
    short = np.expm1(rng.exponential(1.0, size=(1, 200)))  # 20 points above q0.9
    assert np.isnan(tail_level(*_tail_args(short), 1e-4)).all()
    history = _tail_history(short)
    # Too short for the fit: the calibration quantile decides, as without a rate.
    np.testing.assert_allclose(calibration_scale(history, 1e-4),
                               calibration_scale(history, None))
    long = np.expm1(rng.exponential(1.0, size=(1, 5_000)))
    history = _tail_history(long)
    assert calibration_scale(history, 1e-4)[0] > calibration_scale(history, None)[0] + 2


def test_rarer_false_alarms_raise_the_bar_and_scores_above_it_alarm():
    rng = np.random.default_rng(11)
    past = np.expm1(rng.exponential(1.0, size=(1, 5_000)))
    history = _tail_history(past)
    often, rarely = (calibration_scale(history, p)[0] for p in (1e-3, 1e-5))
    assert often < rarely
    at_level = np.expm1(np.array([[0.9 * rarely, 1.1 * rarely]]))
    out = calibrate(at_level, history, suppress=False, exceedance=1e-5)
    assert out.score[0, 0] < 1 < out.score[0, 1]


def test_history_from_memory_holds_the_tail_quantiles_and_the_count():
    past = np.array([[np.nan, *np.arange(100.0)]])
    history = history_of(past, 0.99, calibration_points=101, suppression_points=1)
    assert history.tail is not None and history.count is not None
    np.testing.assert_allclose(history.tail[0], np.quantile(np.arange(100.0), TAIL_LEVELS))
    assert history.count[0] == 100


def test_the_false_alarm_rate_sets_the_quantile_asked_of_the_history():
    from openanomaly.domain.detection import exceedance_of, history_quantile
    from openanomaly.domain.pipeline import ScoringSpec

    quantile_only = ScoringSpec(calibration_quantile=0.98)
    assert exceedance_of(quantile_only, 60.0) is None
    assert history_quantile(quantile_only, 60.0) == 0.98
    daily = ScoringSpec(false_alarm_days=1.0)
    # Once a day: 1 point in 1,440 at 1-minute steps, 1 in 288 at 5-minute steps.
    assert exceedance_of(daily, 60.0) == pytest.approx(1 / 1440)
    assert history_quantile(daily, 300.0) == pytest.approx(1 - 1 / 288)
    # Rarer than the database can tell apart: the fit takes over from that quantile.
    assert history_quantile(ScoringSpec(false_alarm_days=365.0), 1.0) == 0.9999


def test_with_enough_points_above_the_level_its_own_quantile_calibrates():
    rng = np.random.default_rng(13)
    past = np.expm1(rng.exponential(1.0, size=(1, 5_000)))
    exceedance = 0.01  # 50 points above it: the empirical quantile is used as it is
    history = history_of(past, 1 - exceedance, 5_000, 1)
    np.testing.assert_allclose(calibration_scale(history, exceedance),
                               np.log1p(np.quantile(past, 1 - exceedance)))


def test_an_alarm_at_the_same_time_a_season_earlier_raises_the_bar_by_the_margin():
    # log1p(9) = 2.30: the day before alarmed near this time, so today's point must reach
    # 1.5 x 2.30 = 3.45 (raw 30.5) to alarm.
    raw = np.array([[9.0, 20.0, 40.0]])
    history = ScoreHistory(np.array([np.nan]), np.array([np.nan]), recurring=np.array([9.0]))
    out = calibrate(raw, history, suppress=True, recurring_margin=1.5)
    assert (out.score[0] > 1).tolist() == [False, False, True]
    assert out.score[0, 2] == pytest.approx(math.log1p(40.0) / (1.5 * math.log1p(9.0)))


def test_an_ordinary_day_before_changes_nothing():
    # log1p(1) = 0.69 would not have alarmed: no bar is raised, however large the margin.
    raw = np.array([[9.0, 2.0]])
    plain = calibrate(raw, NO_HISTORY, suppress=True)
    history = ScoreHistory(np.array([np.nan]), np.array([np.nan]), recurring=np.array([1.0]))
    out = calibrate(raw, history, suppress=True, recurring_margin=3.0)
    np.testing.assert_array_equal(out.score, plain.score)


def test_a_nightly_spike_alarms_on_its_first_night_only():
    # Four days of 10 steps after a long quiet history: a spike of raw 9 near the same
    # step each night (one step later on the third), and on the last day a spike at
    # another time; scored in windows of 2 steps.
    days, per_day = 4, 10
    raw = np.full((1, days * per_day), 0.2)
    for day, offset in enumerate((4, 4, 5, 4)):
        raw[0, day * per_day + offset] = 9.0
    raw[0, 3 * per_day + 8] = 9.0

    def alarms(recurring: RecurringSpan | None) -> list[int]:
        history = RunningHistory(np.full((1, 1000), 0.2), 0.99, 1000, 3, recurring)
        found = []
        for start in range(0, raw.shape[1], 2):
            window = raw[:, start:start + 2]
            out = calibrate(window, history.next_window(window), suppress=True,
                            recurring_margin=1.5)
            found += [start + int(i) for i in np.flatnonzero(out.score[0] > 1)]
        return found

    assert alarms(None) == [4, 14, 25, 34, 38]
    assert alarms(RecurringSpan(per_day, 1)) == [4, 38]


def test_the_recurring_span_is_the_window_a_season_back_widened_by_the_tolerance():
    span = RecurringSpan(season=10, tolerance=2)
    # A window of 3 points starting at column 30: columns 20-22 a season back, 18-24 with
    # the tolerance.
    assert span.columns(30, 3) == (18, 25)
    # Cut to the history there is: none before column 0, nothing at or after the window.
    assert span.columns(5, 3) == (0, 0)
    assert span.columns(11, 3) == (0, 6)
    assert RecurringSpan(season=2, tolerance=2).columns(30, 3) == (26, 30)
    assert span.reach == 12


def _exponential_scores(count: int, scale: float) -> np.ndarray:
    """Raw scores whose compressed values are an exponential sample of ``scale``, at
    evenly spaced quantiles (no sampling noise), shuffled."""
    levels = (np.arange(count) + 0.5) / count
    compressed = -scale * np.log1p(-levels)
    return np.random.default_rng(0).permutation(np.expm1(compressed))[None, :]


def test_a_young_history_stands_in_for_the_rest_of_the_window_by_its_expected_peak():
    # Exact quantiles of an exponential of scale 0.2: 0.75 at 0.2 ln 4, 0.9 at 0.2 ln 10;
    # 100 points held of a window of 1000, so 900 unseen.
    scale = 0.2
    quantiles = np.expm1(scale * np.log([[4.0, 10.0]]))
    history = ScoreHistory(np.array([np.nan]), np.array([0.5]), recent=quantiles,
                           recent_count=np.array([100.0]))
    expected = scale * (math.log(900) + 0.5772156649)
    assert unseen_peak(history, 1000)[0] == pytest.approx(expected)
    # A history that holds the whole window, or too little to tell, stands in for nothing.
    full, scant = (replace(history, recent_count=np.array([n])) for n in (1000.0, 10.0))
    assert np.isnan(unseen_peak(full, 1000)[0])
    assert np.isnan(unseen_peak(scant, 1000)[0])
    assert unseen_peak(replace(history, recent=None), 1000) is None


def test_a_record_over_a_few_hours_is_no_alarm_when_an_ordinary_day_beats_it():
    # 200 points of a day of 1440 held: their maximum is compressed 0.2 ln 400 = 1.20,
    # an ordinary full day's about 0.2 ln 2880 = 1.59.
    scale, day = 0.2, 1440
    young = history_of(_exponential_scores(200, scale), 0.99, 10_000, day)
    mature = history_of(_exponential_scores(day, scale), 0.99, 10_000, day)
    stand_in = unseen_peak(young, day)[0]
    assert stand_in == pytest.approx(math.log1p(mature.peak[0]), rel=0.1)
    record, spike = np.expm1(1.35), np.expm1(2.5)
    raw = np.array([[record, spike]])
    without = calibrate(raw, young, suppress=True)
    assert (without.score[0] > 1).tolist() == [True, True]
    out = calibrate(raw, young, suppress=True, unseen=unseen_peak(young, day))
    assert (out.score[0] > 1).tolist() == [False, True]
    # The same record is no alarm against a whole ordinary day either.
    assert calibrate(raw, mature, suppress=True).score[0, 0] < 1
