"""The incident suite: each class changes its series only from its start, where its label
says, the way its name says; the suite is deterministic and complete."""

import numpy as np
import pytest

from openanomaly.domain.incidents import (
    APPLIES,
    CASES_PER_CLASS,
    CLASSES,
    CONTROL,
    PHASE_SHIFT_S,
    CaseName,
    base_metric,
    incident_range,
    inject,
    place,
    plan,
    rows_of,
    series_rows,
    suite,
)
from openanomaly.domain.metric_shapes import SHAPES, Metric, mean_reverting_walk
from openanomaly.domain.nab_scoring import first_scored_row

STEP = 300
ROWS = series_rows(STEP)
START = 800
# Classes whose change ends with their window; the others last to the end of the series.
TRANSIENT = {"spike", "variance_burst", "seasonal_drop", "surge", "flatline"}


def metric(shape: str, seed: int = 3) -> Metric:
    return SHAPES[shape](ROWS, float(STEP), np.random.default_rng(seed), 1.0)


def injected(kind: str, shape: str, start: int = START):
    base = metric(shape)
    return base, inject(kind, base, start, np.random.default_rng(11))


@pytest.mark.parametrize(("kind", "shape"),
                         [(kind, shape) for kind in CLASSES for shape in APPLIES[kind]])
def test_each_class_changes_the_series_only_from_its_start(kind, shape):
    base, incident = injected(kind, shape)
    control = base.values()
    (start, end), = incident.windows
    assert start == START and START <= end < ROWS
    np.testing.assert_array_equal(incident.values[:start], control[:start])
    assert not np.array_equal(incident.values[start:end + 1], control[start:end + 1])
    if kind in TRANSIENT:
        np.testing.assert_array_equal(incident.values[end + 1:], control[end + 1:])
    assert incident.kind == kind


def test_window_lengths_follow_each_class():
    expected = {"spike": 1, "variance_burst": 6, "seasonal_drop": 6, "surge": 6,
                "flatline": 12, "step_up": 12, "step_down": 12, "variance_change": 12,
                "phase_shift": 12}
    for kind, rows in expected.items():
        (start, end), = injected(kind, APPLIES[kind][0])[1].windows
        assert end - start + 1 == rows, kind
    (start, end), = injected("drift", "memory")[1].windows
    assert 3 * 12 <= end - start + 1 <= 6 * 12  # the ramp: 3 to 6 hours


def test_a_spike_is_one_point_six_to_ten_noise_sigmas_away():
    for shape in APPLIES["spike"]:
        base, incident = injected("spike", shape)
        jump = abs(incident.values[START] - base.values()[START]) / base.spread[START]
        assert 5.5 <= jump <= 10.5, shape  # a count is rounded to a whole number


def test_level_shifts_persist_in_their_direction():
    for kind, sign in (("step_up", 1), ("step_down", -1)):
        base, incident = injected(kind, "cpu")
        shift = incident.values[START:] - base.values()[START:]
        assert np.allclose(shift, shift[0]) and sign * shift[0] >= 5 * base.sigma - 1e-9
    # A step down never takes a rate through its floor.
    base, incident = injected("step_down", "requests")
    assert incident.values.min() > 0


def test_variance_classes_scale_the_noise_not_the_level():
    base, burst = injected("variance_burst", "cpu")
    (start, end), = burst.windows
    np.testing.assert_allclose(burst.values[start:end + 1] - base.level[start:end + 1],
                               5 * base.noise[start:end + 1])
    base, change = injected("variance_change", "cpu")
    np.testing.assert_allclose(change.values[START:] - base.level[START:],
                               3 * base.noise[START:])


def test_a_phase_shift_repeats_the_series_hours_late():
    base, incident = injected("phase_shift", "requests")
    lag = rows_of(PHASE_SHIFT_S, STEP)
    np.testing.assert_array_equal(incident.values[START:], base.values()[START - lag:ROWS - lag])


def test_a_phase_shift_is_placed_where_the_late_curve_departs_most():
    base = metric("requests")
    earliest, latest = incident_range(ROWS, STEP)
    start = place("phase_shift", base, np.random.default_rng(0), earliest, latest)
    lag = rows_of(PHASE_SHIFT_S, STEP)
    rows = np.arange(earliest, latest + 1)
    departures = np.abs(base.level[rows - lag] - base.level[rows])
    assert abs(base.level[start - lag] - base.level[start]) >= 0.8 * departures.max()


def test_drops_and_surges_scale_the_rate_for_half_an_hour():
    for kind, factor in (("seasonal_drop", 0.4), ("surge", 2.5)):
        base, incident = injected(kind, "requests")
        (start, end), = incident.windows
        np.testing.assert_allclose(incident.values[start:end + 1],
                                   factor * base.values()[start:end + 1])


def test_a_flatline_repeats_the_last_value_for_an_hour():
    base, incident = injected("flatline", "latency")
    (start, end), = incident.windows
    assert (incident.values[start:end + 1] == base.values()[start - 1]).all()
    assert (end - start + 1) * STEP == 3600


def test_a_drift_ramps_up_over_its_window_and_stays():
    base, incident = injected("drift", "memory")
    (start, end), = incident.windows
    added = incident.values - base.values()
    assert (np.diff(added[start:end + 1]) > 0).all()
    assert 6 * base.sigma <= added[end] <= 10 * base.sigma
    np.testing.assert_allclose(added[end + 1:], added[end])


def test_controls_are_unlabelled_and_unchanged():
    base = metric("queue")
    control = inject(CONTROL, base, 0, np.random.default_rng(0))
    assert control.windows == ()
    np.testing.assert_array_equal(control.values, base.values())


def test_unknown_class_and_start_outside_the_series_are_refused():
    with pytest.raises(ValueError, match="unknown incident class 'outage'"):
        inject("outage", metric("cpu"), START, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside the series"):
        inject("spike", metric("cpu"), ROWS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown incident class"):
        suite([1], [300], ["outage"])


def test_shapes_stay_in_their_bounds():
    for shape in SHAPES:
        for seed in range(5):
            values = metric(shape, seed).values()
            assert np.isfinite(values).all() and values.min() >= 0, shape
    counts = metric("counts").values()
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert metric("cpu").values().max() <= 100


def test_the_queue_walk_follows_its_recursion():
    shocks = np.random.default_rng(0).normal(size=1000)
    expected, previous = [], 0.0
    for shock in shocks:
        previous = 0.98 * previous + shock
        expected.append(previous)
    np.testing.assert_allclose(mean_reverting_walk(shocks, 0.98, chunk=64), expected,
                               rtol=1e-9, atol=1e-9)


def test_suite_counts_and_names():
    cases = suite([1, 2], [60, 300])
    names = [str(c.name) for c in cases]
    assert len(set(names)) == len(names)
    for seed in (1, 2):
        for step in (60, 300):
            mine = [c for c in cases if c.name.seed == seed and c.name.step_seconds == step]
            for kind in CLASSES:
                of_kind = [c for c in mine if c.name.kind == kind]
                assert len(of_kind) == CASES_PER_CLASS
                assert {c.name.shape for c in of_kind} <= set(APPLIES[kind])
                assert len({c.name.shape for c in of_kind}) == min(4, len(APPLIES[kind]))
            controls = [c for c in mine if c.name.kind == CONTROL]
            assert len(controls) == 2 * len(SHAPES) and all(c.windows == () for c in controls)
            assert {c.name.shape for c in controls} == set(SHAPES)
    assert CaseName.parse("step_up/latency/s60/seed1/2") == CaseName("step_up", "latency", 60, 1, 2)
    assert all(CaseName.parse(name) == case.name for name, case in zip(names, cases, strict=True))


def test_suite_is_deterministic_per_seed():
    first, again, other = suite([1], [300]), suite([1], [300]), suite([2], [300])
    for a, b in zip(first, again, strict=True):
        assert a.name == b.name and a.windows == b.windows
        np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(first[0].values, other[0].values)
    # A case does not depend on what else the suite holds.
    alone = suite([1], [300], ["drift"], controls=False)
    same = [c for c in first if c.name.kind == "drift"]
    for a, b in zip(alone, same, strict=True):
        np.testing.assert_array_equal(a.values, b.values)


def test_incidents_start_late_enough_to_be_scored_after_two_days():
    assert series_rows(300) == 4 * 288 and series_rows(60) == 3 * 1440
    for case in suite([1], [60, 300]):
        rows = case.values.size
        assert rows == series_rows(case.name.step_seconds)
        for start, end in case.windows:
            assert start >= rows // 2 and start > first_scored_row(rows)
            assert start * case.name.step_seconds >= 2 * 86400
            # The hour of tolerance after the window fits in the series.
            assert end + 3600 // case.name.step_seconds < rows
    # At 60 s the series also holds a full context of 2048 rows and the probation.
    assert series_rows(60) >= 2048 + first_scored_row(series_rows(60))
    with pytest.raises(ValueError, match="no room"):
        incident_range(series_rows(86400), 86400)


def test_every_case_shows_on_a_chart():
    """Each incident moves some row of its window well outside the noise, except where
    the class is a change of noise or a frozen value, and on bursty counts, where a 60 %
    drop stands out only as a run of low points."""
    for kind, shape, noise, step, seed, index in plan([1, 2], [60, 300]):
        if kind in (CONTROL, "flatline", "variance_change") or shape == "counts":
            continue
        case = suite([seed], [step], [kind], controls=False)[index]
        base = base_metric(kind, shape, noise, step, seed, index)
        (start, end), = case.windows
        change = np.abs(case.values - base.values())[start:end + 1] / base.spread[start:end + 1]
        assert change.max() >= 4, case.name
        assert (np.abs(case.values - base.values())[:start] == 0).all()
