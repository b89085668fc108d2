import numpy as np
import pytest

from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import QuantileForecast, interpolate_quantiles
from openanomaly.domain.pipeline import Direction, ScoringSpec
from openanomaly.domain.scoring import interval_score, noise_level, score, zscore_score

MEDIAN, LOWER, UPPER = np.array([[10.0]]), np.array([[8.0]]), np.array([[14.0]])


@pytest.mark.parametrize(("actual", "expected"), [
    (10.0, 0.0), (14.0, 1.0), (8.0, 1.0), (12.0, 0.5), (9.0, 0.5), (18.0, 2.0), (4.0, 3.0),
])
def test_interval_score_is_zero_at_median_one_at_band_edge(actual, expected):
    scores = interval_score(np.array([[actual]]), MEDIAN, LOWER, UPPER)
    assert scores[0, 0] == pytest.approx(expected)


def test_direction_ignores_the_other_side():
    actual = np.array([[18.0, 4.0]])
    m, lo, hi = (np.repeat(a, 2, axis=1) for a in (MEDIAN, LOWER, UPPER))
    assert interval_score(actual, m, lo, hi, Direction.above).tolist() == [[2.0, 0.0]]
    assert interval_score(actual, m, lo, hi, Direction.below).tolist() == [[0.0, 3.0]]


def test_min_deviation_silences_small_absolute_changes():
    actual = np.array([[10.5, 16.0]])
    m, lo, hi = np.full((1, 2), 10.0), np.full((1, 2), 9.9), np.full((1, 2), 10.1)
    scores = interval_score(actual, m, lo, hi, min_deviation=1.0)
    assert scores[0, 0] == 0.0
    assert scores[0, 1] == pytest.approx(60.0)


def test_nan_inputs_give_nan_never_zero():
    actual = np.array([[np.nan, 10.0]])
    median = np.array([[10.0, np.nan]])
    scores = interval_score(actual, median, median - 1, median + 1, min_deviation=5)
    assert np.isnan(scores).all()


def test_flat_band_gives_zero_at_median_and_large_finite_scores_elsewhere():
    flat = np.full((1, 2), 5.0)
    scores = interval_score(np.array([[5.0, 6.0]]), flat, flat, flat)
    assert scores[0, 0] == 0.0
    assert np.isfinite(scores[0, 1]) and scores[0, 1] > 1e4


def test_zscore_maps_threshold_sigmas_to_one():
    # A symmetric 0.1/0.9 band of half-width 1.2816 means sigma = 1.
    median = np.zeros((1, 1))
    scores = zscore_score(np.array([[3.0]]), median, median - 1.2815516, median + 1.2815516,
                          (0.1, 0.9), threshold=3.0)
    assert scores[0, 0] == pytest.approx(1.0, rel=1e-6)


def test_score_applies_band_scale_and_noise_floor_to_the_written_band():
    forecast = QuantileForecast((0.1, 0.5, 0.9), np.array([[[9.0, 10.0, 11.0]]]))
    scaled = score(ScoringSpec(band_scale=2.0, noise_floor=0), np.array([[12.0]]), forecast)
    assert (scaled.lower[0, 0], scaled.upper[0, 0], scaled.score[0, 0]) == (8.0, 12.0, 1.0)
    floored = score(ScoringSpec(noise_floor=3.0), np.array([[13.0]]), forecast, np.array([1.0]))
    assert (floored.lower[0, 0], floored.upper[0, 0], floored.score[0, 0]) == (7.0, 13.0, 1.0)


def test_noise_level_is_robust_and_per_series():
    rng = np.random.default_rng(0)
    noisy = rng.normal(0, 2.0, 5000)
    noisy[::100] += 1000  # outliers barely move a median-based estimate
    context = np.stack([noisy, np.full(5000, np.nan)])
    level = noise_level(context)
    assert level[0] == pytest.approx(2.0, rel=0.1)
    assert np.isnan(level[1])


def test_interpolate_quantiles_between_native_levels_and_refuse_outside():
    native = np.array([[[0.0, 10.0, 20.0]]])
    out = interpolate_quantiles((0.1, 0.5, 0.9), native, (0.3, 0.5), "m")
    assert out.values[0, 0].tolist() == pytest.approx([5.0, 10.0])
    with pytest.raises(ModelError, match=r"0\.1\.\.0\.9"):
        interpolate_quantiles((0.1, 0.5, 0.9), native, (0.05, 0.5), "m")


def test_crossing_quantiles_are_sorted():
    native = np.array([[[3.0, 1.0, 2.0]]])
    out = interpolate_quantiles((0.1, 0.5, 0.9), native, (0.1, 0.5, 0.9), "m")
    assert out.values[0, 0].tolist() == [1.0, 2.0, 3.0]


def test_counts_are_whole_non_negative_numbers_with_enough_known_values():
    from openanomaly.domain.scoring import counts_like

    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (1, 100)).astype(float)
    counts[0, :10] = np.nan  # padding and gaps do not matter
    rates = counts / 60.0
    negative = counts - 5
    short = np.full((1, 100), np.nan)
    short[0, -5:] = 1.0
    found = counts_like(np.concatenate([counts, rates, negative, short]))
    assert found.tolist() == [True, False, False, False]


def test_a_count_series_band_is_never_narrower_than_its_counting_noise():
    # A model sure of 4 events per step (a band of ±0.1) is not believed: the band's
    # half-width is at least noise_floor x sqrt(4) = 2 x 2 events, so 7 events are
    # ordinary and 12 are not. The same values as a non-count series keep the model's band.
    spec = ScoringSpec(noise_floor=2.0)
    forecast = QuantileForecast((0.1, 0.5, 0.9), np.array([[[3.9, 4.0, 4.1]] * 2]))
    actual = np.array([[7.0, 12.0]])
    noise = np.array([0.0])
    as_counts = score(spec, actual, forecast, noise, np.array([True]))
    assert as_counts.score[0].tolist() == pytest.approx([0.75, 2.0])
    assert as_counts.upper[0, 0] == pytest.approx(8.0)
    plain = score(spec, actual, forecast, noise, np.array([False]))
    assert plain.score[0, 0] == pytest.approx(30.0)
    off = score(ScoringSpec(noise_floor=2.0, count_noise=False), actual, forecast, noise,
                np.array([True]))
    assert off.score[0, 0] == pytest.approx(30.0)
