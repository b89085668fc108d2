"""Judging alarms on labelled incidents, on hand-made score arrays."""

import math

import numpy as np
import pytest

from openanomaly.domain.incident_scoring import (
    CaseOutcome,
    event_starts,
    headline,
    score_case,
    summarise,
)


def scores(rows=300, alarms=(), value=2.0, unscored=50):
    """Quiet scores with ``alarms`` rows above 1, NaN before the first scored row."""
    out = np.full(rows, 0.3)
    out[:unscored] = np.nan
    out[list(alarms)] = value
    return out


def case(values, windows=((100, 109),), step=60.0, tolerance=5, gradual=False, kind="k"):
    return score_case("c", kind, values, windows, step, 1.0, tolerance, gradual)


def test_an_alarm_in_the_window_is_found_with_its_delay():
    outcome = case(scores(alarms=[103, 104]))
    assert outcome.found and outcome.delay == 3 and outcome.in_time
    assert outcome.delay_minutes == 3.0 and outcome.false_alarms == 0
    assert outcome.window == (100, 109)


def test_an_alarm_in_the_tolerance_after_the_window_still_finds_it():
    outcome = case(scores(alarms=[113]))  # window ends at 109, tolerance 5 rows
    assert outcome.found and outcome.delay == 13 and not outcome.in_time
    assert outcome.false_alarms == 0


def test_an_alarm_beyond_the_tolerance_is_a_false_alarm_not_a_find():
    outcome = case(scores(alarms=[115]))
    assert not outcome.found and outcome.delay is None and not outcome.in_time
    assert outcome.false_alarms == 1


def test_a_run_of_alarms_is_one_event():
    values = scores(alarms=[60, 61, 62, 200, 250, 251])
    assert event_starts(values, 1.0).tolist() == [60, 200, 250]
    assert case(values).false_alarms == 3


def test_a_run_that_starts_in_the_window_is_no_false_alarm_however_long():
    outcome = case(scores(alarms=range(105, 160)))
    assert outcome.found and outcome.delay == 5 and outcome.in_time
    assert outcome.false_alarms == 0


def test_a_run_that_starts_before_the_window_is_a_false_alarm_and_a_find():
    outcome = case(scores(alarms=range(97, 102)))
    assert outcome.found and outcome.delay == 0 and outcome.false_alarms == 1


def test_the_threshold_must_be_exceeded_and_nan_never_alarms():
    values = scores(alarms=[100], value=1.0)
    assert not case(values).found
    values = scores(alarms=[60, 62])
    values[61] = np.nan  # a missing score between two alarms: two alerts
    assert event_starts(values, 1.0).tolist() == [60, 62]
    values = scores()
    values[100:110] = np.nan
    assert not case(values).found


def test_scored_days_count_only_scored_rows():
    outcome = case(scores(rows=1440 + 100, unscored=100), windows=(), step=60.0)
    assert outcome.scored_days == pytest.approx(1.0)
    assert outcome.window is None and not outcome.found and outcome.false_alarms == 0


def test_a_gradual_incident_is_in_time_before_its_ramp_ends():
    values = scores(alarms=[108])
    assert case(values, gradual=True).in_time
    assert not case(values, gradual=False).in_time
    late = scores(alarms=[112])  # in the tolerance: found, but the ramp had ended
    assert case(late, gradual=True).found and not case(late, gradual=True).in_time


def test_one_window_per_case_and_no_negative_tolerance():
    with pytest.raises(ValueError, match="one labelled window"):
        case(scores(), windows=((10, 20), (30, 40)))
    with pytest.raises(ValueError, match="tolerance"):
        case(scores(), tolerance=-1)


def outcome(kind, delay=None, step=60.0, false_alarms=0, days=1.0, window=(0, 10),
            in_time=None):
    found = delay is not None
    if in_time is None:
        in_time = found and delay <= 5
    return CaseOutcome(f"{kind}/x", kind, step, window, found, delay, in_time,
                       false_alarms, days)


def test_summaries_per_class_with_delays_in_steps_and_minutes():
    outcomes = [
        outcome("spike", 1, step=60.0), outcome("spike", 3, step=300.0),
        outcome("spike", 9, step=60.0, false_alarms=2), outcome("spike", None),
        outcome("control", window=None, false_alarms=1, days=4.0),
        outcome("control", window=None, days=1.0),
    ]
    rows = summarise(outcomes, ["spike", "surge"])
    assert [r.kind for r in rows] == ["spike", "control", "all"]  # surge: no cases
    spike, control, every = rows
    assert (spike.cases, spike.found, spike.quick, spike.in_time) == (4, 3, 2, 2)
    assert spike.median_delay == 3 and spike.max_delay == 9
    # 1 min, 15 min, 9 min: the minutes come from each case's own step.
    assert spike.median_delay_minutes == 9 and spike.max_delay_minutes == 15
    assert spike.fa_per_day == pytest.approx(2 / 4) and not spike.meets_goal
    assert not control.labelled and control.fa_per_day == pytest.approx(1 / 5)
    assert control.meets_goal  # at the goal of 0.2
    assert every.cases == 6 and every.false_alarms == 3
    assert every.fa_per_day == pytest.approx(3 / 9)


def test_a_class_without_finds_has_no_delays():
    row, = summarise([outcome("flatline"), outcome("flatline")], ["flatline"])[:1]
    assert row.found == 0 and math.isnan(row.median_delay) and math.isnan(row.max_delay)
    assert not row.meets_goal


def test_headline_says_which_classes_meet_the_goal():
    outcomes = [outcome("spike", 0), outcome("spike", 2),
                outcome("drift", 40, in_time=True), outcome("step_up", 7),
                outcome("control", window=None, false_alarms=1, days=2.0)]
    rows = summarise(outcomes, ["spike", "step_up", "drift"])
    result = headline(rows)
    assert result.met == ("spike", "drift") and result.missed == ("step_up",)
    assert result.controls_fa_per_day == pytest.approx(0.5) and not result.controls_met
    assert not result.all_met
    assert "2 of 3 classes" in result.text() and "missed by step_up" in result.text()
    assert "0.50 false alarms per series-day" in result.text()
    quiet = headline(summarise([*outcomes[:3], outcome("control", window=None, days=10.0)],
                               ["spike", "drift"]))
    assert quiet.all_met and quiet.controls_fa_per_day == 0
