"""The detectors beside the forecast residual: each fires on its own kind of incident,
stays quiet on ordinary series, and never looks ahead."""

from __future__ import annotations

import numpy as np
import pytest

from openanomaly.domain.check import check_windows
from openanomaly.domain.detectors import Detector, combined, detector_scores
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.pipeline import ScoringSpec

STEP = 300.0
DAY = round(86400 / STEP)
CONTEXT = 7 * DAY
WINDOW = 48
ALARM = np.e - 1  # a raw score that alarms on a series with a quiet history


def daily(rows: int, seed: int, noise: float = 2.0, level: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(CONTEXT + WINDOW)
    shape = level + 40 * np.sin(2 * np.pi * t / DAY)
    return shape + rng.normal(0, noise, (rows, t.size))


def split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values[:, :CONTEXT], values[:, CONTEXT:]


def scores(values: np.ndarray, *detectors: Detector, direction: str = "both",
           step: float = STEP) -> dict[Detector, np.ndarray]:
    context, window = split(values)
    return detector_scores(context, window, step, detectors, direction)


@pytest.mark.parametrize("detector", list(Detector))
def test_ordinary_series_stay_below_the_alarm_level(detector: Detector) -> None:
    values = daily(20, seed=1)
    raw = scores(values, detector)[detector]
    assert raw.shape == (20, WINDOW)
    assert np.mean(raw > ALARM) < 0.01


def test_frozen_fires_within_a_few_steps_of_a_value_that_stops_moving() -> None:
    values = daily(3, seed=2)
    values[1, CONTEXT:] = values[1, CONTEXT - 1]
    raw = scores(values, Detector.frozen)[Detector.frozen]
    assert raw[0].max() == 0 and raw[2].max() == 0
    first = int(np.argmax(raw[1] > ALARM))
    assert raw[1, first] > ALARM and first <= 4


def test_frozen_allows_a_series_the_standstills_it_always_has() -> None:
    """A sparse count that sits at zero for stretches is not frozen while it keeps to
    stretches as long as those of its context."""
    rng = np.random.default_rng(3)
    values = np.where(rng.random((1, CONTEXT + WINDOW)) < 0.1, 1.0, 0.0)
    values[0, CONTEXT:] = np.where(np.arange(WINDOW) % 8 == 0, 1.0, 0.0)
    assert scores(values, Detector.frozen)[Detector.frozen].max() == 0


def test_seasonal_catches_a_drop_the_band_would_follow() -> None:
    values = daily(2, seed=4)
    values[1, CONTEXT + 10:CONTEXT + 16] *= 0.4  # 60 % down for half an hour
    raw = scores(values, Detector.seasonal)[Detector.seasonal]
    assert raw[1, 10] > ALARM  # at once
    assert raw[0].max() < ALARM
    assert np.all(raw[1, :10] == raw[1, :10])  # nothing before the drop is NaN


def test_seasonal_respects_the_direction() -> None:
    values = daily(1, seed=5)
    values[0, CONTEXT + 10:CONTEXT + 16] *= 0.4
    below = scores(values, Detector.seasonal, direction="below")[Detector.seasonal]
    above = scores(values, Detector.seasonal, direction="above")[Detector.seasonal]
    assert below[0, 10] > ALARM
    assert above[0, 10:16].max() < ALARM


def test_seasonal_needs_a_season_of_context() -> None:
    values = daily(1, seed=6)
    values[0, CONTEXT + 10:] *= 0.4
    short = values[:, CONTEXT - DAY // 2:]
    raw = detector_scores(short[:, :-WINDOW], short[:, -WINDOW:], STEP,
                          [Detector.seasonal])[Detector.seasonal]
    assert raw.max() == 0


def test_drift_catches_a_slow_ramp_within_hours() -> None:
    rng = np.random.default_rng(7)
    flat = 200 + rng.normal(0, 5, (2, CONTEXT + WINDOW))
    ramp_start = CONTEXT - 24  # two hours before the window, growing 5 % an hour
    flat[1, ramp_start:] += np.arange(flat.shape[1] - ramp_start) * 10 / 12
    raw = scores(flat, Detector.drift)[Detector.drift]
    assert raw[0].max() < ALARM
    assert raw[1].max() > ALARM
    first = int(np.argmax(raw[1] > ALARM))
    assert first + 24 <= 4 * 12  # within four hours of the ramp's start


def test_drift_score_is_signed_by_direction() -> None:
    rng = np.random.default_rng(8)
    values = 200 + rng.normal(0, 5, (1, CONTEXT + WINDOW))
    values[0, CONTEXT - 24:] -= np.arange(WINDOW + 24) * 10 / 12
    assert scores(values, Detector.drift, direction="above")[Detector.drift].max() < ALARM
    assert scores(values, Detector.drift, direction="below")[Detector.drift].max() > ALARM


def test_variance_catches_a_lasting_rise_in_noise() -> None:
    values = daily(2, seed=9, noise=1.0)
    rng = np.random.default_rng(10)
    values[1, CONTEXT:] += rng.normal(0, 8.0, WINDOW)
    raw = scores(values, Detector.variance)[Detector.variance]
    assert raw[1, 12:].max() > ALARM
    assert raw[0].max() < ALARM


def test_scores_are_causal_and_nan_where_the_actual_is_missing() -> None:
    values = daily(2, seed=11)
    later = values.copy()
    later[:, CONTEXT + 20:] += 500.0  # a change after point 20 of the window
    later[0, CONTEXT + 30] = np.nan
    before = scores(values, *Detector)
    after = scores(later, *Detector)
    for detector in Detector:
        np.testing.assert_array_equal(before[detector][:, :20], after[detector][:, :20])
        assert np.isnan(after[detector][0, 30])


def test_rows_are_independent_of_batch_composition() -> None:
    values = daily(5, seed=12)
    values[2, CONTEXT + 5:] *= 0.3
    together = scores(values, *Detector)
    alone = scores(values[2:3], *Detector)
    for detector in Detector:
        np.testing.assert_array_equal(together[detector][2:3], alone[detector])


def test_combined_is_the_largest_detector_score() -> None:
    a = np.array([[0.0, 3.0, np.nan]])
    b = np.array([[1.0, 2.0, np.nan]])
    np.testing.assert_array_equal(
        combined({Detector.frozen: a, Detector.drift: b}, a.shape), [[1.0, 3.0, np.nan]])
    np.testing.assert_array_equal(combined({}, (1, 3)), np.zeros((1, 3)))


def test_the_check_folds_detector_scores_into_the_raw_score() -> None:
    """A frozen value the model forecasts perfectly still alarms once the detector is on."""
    values = daily(1, seed=13)
    values[0, CONTEXT:] = values[0, CONTEXT - 1]
    context, window = split(values)

    def persistence(request: ForecastRequest) -> QuantileForecast:
        last = request.context[:, -1:]
        steps = np.ones((1, request.horizon))
        spread = 10.0
        return QuantileForecast(
            request.quantiles,
            np.stack([last * steps + (q - 0.5) * spread for q in request.quantiles], 2))

    plain = check_windows(ScoringSpec(calibration_window=None, suppression_window=None,
                                      detectors=()),
                          context, window, STEP, persistence, 1)
    with_frozen = check_windows(
        ScoringSpec(calibration_window=None, suppression_window=None,
                    detectors=(Detector.frozen,)), context, window, STEP, persistence, 1)
    assert np.nanmax(plain.raw) < 1
    assert np.nanmax(with_frozen.raw) > ALARM
    assert np.all(with_frozen.raw >= plain.raw)


def test_scoring_spec_reads_detectors_from_yaml_names() -> None:
    spec = ScoringSpec.model_validate({"detectors": ["frozen", "seasonal"], "season": "7d"})
    assert spec.detectors == (Detector.frozen, Detector.seasonal)
    assert spec.season == 7 * 86400
    with pytest.raises(ValueError, match="frozen"):
        ScoringSpec.model_validate({"detectors": ["flat"]})


def test_a_pipeline_with_too_short_a_context_for_a_detector_is_a_clear_error() -> None:
    from openanomaly.domain.pipeline import PipelineSpec

    with pytest.raises(ValueError, match=r"seasonal needs a context of at least 1d16m"):
        PipelineSpec(name="p", query="up", context="1d",
                     scoring={"detectors": ["seasonal"]})
    ok = PipelineSpec(name="p", query="up", context="2d", scoring={"detectors": ["seasonal"]})
    assert ok.scoring.detectors == (Detector.seasonal,)
    PipelineSpec(name="p", query="up", context="1d", scoring={"detectors": ["drift", "frozen"]})


def test_each_detector_is_silent_below_its_needed_context_and_scores_above_it() -> None:
    """needed_context_seconds (which the pipeline check uses) matches what the detectors
    actually need: a step change scores at once in a context that long."""
    from openanomaly.domain.detectors import needed_context_seconds

    for detector in (Detector.seasonal, Detector.drift, Detector.variance):
        points = int(np.ceil(needed_context_seconds(detector, 86400.0, STEP) / STEP))
        values = daily(1, seed=14)[:, -(points + WINDOW):]
        rng = np.random.default_rng(15)
        values[0, points:] += 300.0 + rng.normal(0, 60.0, WINDOW)
        enough = detector_scores(values[:, :points], values[:, points:], STEP, [detector])
        short = detector_scores(values[:, 2:points], values[:, points:], STEP, [detector])
        assert enough[detector].max() > ALARM, detector
        assert short[detector].max() == 0, detector


def test_a_constant_series_is_not_frozen() -> None:
    """One that never moved in its context (a flag, a configured limit) stays at 0; NaN
    padding before its first value does not make it look as if it had moved."""
    values = np.full((2, CONTEXT + WINDOW), 7.0)
    values[1, :100] = np.nan
    assert scores(values, Detector.frozen)[Detector.frozen].max() == 0
