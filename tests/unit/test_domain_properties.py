"""Property-based checks of the numeric core: for any finite input, no exception, no
warning, and a number wherever one is due (NaN only where an actual value is missing)."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from openanomaly.domain.detection import ScoreHistory, calibrate, history_of
from openanomaly.domain.forecast import QuantileForecast
from openanomaly.domain.pipeline import Direction, ScoringSpec, Technique
from openanomaly.domain.scoring import noise_level, score
from openanomaly.domain.series import Series, align
from openanomaly.domain.shifts import reanchor

# Metric values as they come: any finite double a database can hold.
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
SHAPES = st.tuples(st.integers(1, 4), st.integers(1, 12))


def quiet(function, *args, **kwargs):
    """Call with every warning turned into an error: none may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


@st.composite
def forecasts(draw, shape):
    median = draw(arrays(np.float64, shape, elements=FINITE))
    below = draw(arrays(np.float64, shape, elements=st.floats(0, 1e300)))
    above = draw(arrays(np.float64, shape, elements=st.floats(0, 1e300)))
    with np.errstate(over="ignore"):
        values = np.stack([median - below, median, median + above], axis=2)
    values = np.clip(values, -np.finfo(float).max, np.finfo(float).max)
    return QuantileForecast((0.1, 0.5, 0.9), values)


@given(data=st.data(), shape=SHAPES, technique=st.sampled_from(list(Technique)),
       direction=st.sampled_from(list(Direction)), min_deviation=st.floats(0, 1e6))
@settings(max_examples=200, deadline=None)
def test_scores_are_numbers_for_finite_actuals(data, shape, technique, direction,
                                               min_deviation):
    actual = data.draw(arrays(np.float64, shape, elements=FINITE))
    forecast = data.draw(forecasts(shape))
    spec = ScoringSpec(technique=technique, direction=direction, min_deviation=min_deviation)
    scored = quiet(score, spec, actual, forecast, np.full(shape[0], 1.0))
    assert not np.isnan(scored.score).any()
    assert (scored.score >= 0).all()


@given(data=st.data(), shape=SHAPES)
@settings(max_examples=100, deadline=None)
def test_a_missing_actual_is_the_only_nan_score(data, shape):
    actual = data.draw(arrays(np.float64, shape, elements=st.one_of(
        st.floats(-1e6, 1e6), st.just(np.nan))))
    scored = quiet(score, ScoringSpec(), actual, data.draw(forecasts(shape)))
    assert np.array_equal(np.isnan(scored.score), np.isnan(actual))


@given(raw=arrays(np.float64, SHAPES, elements=st.one_of(st.floats(0, 1e300),
                                                         st.just(np.nan))),
       quantile=st.one_of(st.floats(0, 1e300), st.just(np.nan)),
       peak=st.one_of(st.floats(0, 1e300), st.just(np.nan)),
       suppress=st.booleans())
@settings(max_examples=200, deadline=None)
def test_calibrated_scores_are_numbers_where_raw_ones_are(raw, quantile, peak, suppress):
    n = raw.shape[0]
    history = ScoreHistory(np.full(n, quantile), np.full(n, peak))
    calibrated = quiet(calibrate, raw, history, suppress)
    assert np.array_equal(np.isnan(calibrated.score), np.isnan(raw))
    assert (calibrated.score[~np.isnan(raw)] >= 0).all()
    assert np.isfinite(calibrated.band_factor).all()


@given(past=arrays(np.float64, SHAPES, elements=st.one_of(FINITE, st.just(np.nan))),
       points=st.integers(0, 20))
@settings(max_examples=100, deadline=None)
def test_history_of_any_past_scores_does_not_fail(past, points):
    history = quiet(history_of, past, 0.99, points, points)
    assert history.quantile.shape == history.peak.shape == (past.shape[0],)


@given(contexts=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(0, 80)),
                       elements=st.one_of(st.floats(-1e12, 1e12), st.just(np.nan))))
@settings(max_examples=100, deadline=None)
def test_noise_and_reanchoring_keep_shape_and_finite_values(contexts):
    assert quiet(noise_level, contexts).shape == (contexts.shape[0],)
    moved = quiet(reanchor, contexts)
    assert moved.shape == contexts.shape
    assert np.array_equal(np.isnan(moved), np.isnan(contexts))


@given(stamps=st.lists(st.integers(-10_000, 200_000), max_size=40),
       start=st.integers(0, 50_000), span=st.integers(0, 100_000),
       step=st.integers(1, 20_000))
@settings(max_examples=200, deadline=None)
def test_alignment_places_exactly_the_on_grid_samples(stamps, start, span, step):
    times = np.array(sorted(set(stamps)), dtype=np.int64)
    values = np.arange(times.size, dtype=np.float64)
    batch = quiet(align, [Series({"k": "v"}, times, values)], start, start + span, step)
    assert batch.values.shape == (1, batch.timestamps_ms.size)
    for t, value in zip(batch.timestamps_ms.tolist(), batch.values[0].tolist(), strict=True):
        found = np.flatnonzero(times == t)
        assert (np.isnan(value) and found.size == 0) or value == values[found[0]]
