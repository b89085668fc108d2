"""The detection stage: compression, calibration against a series' own history, and
suppression of repeated alarms."""

import math

import numpy as np
import pytest

from openanomaly.domain.detection import ScoreHistory, calibrate, history_of, scale_of

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
