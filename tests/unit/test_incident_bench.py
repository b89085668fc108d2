"""The incident suite replayed through the production scoring with a real (seasonal
naive) model, then judged per case and per class."""

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.domain.incidents import suite
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.services.incident_bench import (
    assess,
    replay_inputs,
    run_suite,
    tolerance_rows,
)
from openanomaly.services.nab_replay import replay

ENGINE = LocalModelEngine({"seasonal_naive": SeasonalNaiveSettings()})


def replay_naive(items):
    return replay(items, ScoringSpec(), ENGINE, "seasonal_naive", horizon=48, context=2048)


def test_cases_become_replay_inputs_with_their_step_and_labels():
    cases = suite([1], [60, 300], ["spike"], controls=False)
    items = replay_inputs(cases)
    assert [i.name for i in items] == [str(c.name) for c in cases]
    assert {i.step_seconds for i in items} == {60.0, 300.0}
    assert all(i.windows == c.windows for i, c in zip(items, cases, strict=True))


def test_the_tolerance_is_an_hour_whatever_the_step():
    assert tolerance_rows(60) == 60 and tolerance_rows(300) == 12 and tolerance_rows(7) == 515


def test_surges_are_found_at_once_and_controls_are_judged_on_false_alarms():
    cases = suite([1], [300], ["surge"])
    result = run_suite(cases, replay_naive, threshold=1.0)
    assert [o.name for o in result.outcomes] == [str(c.name) for c in cases]
    surge, controls, every = result.rows
    assert surge.kind == "surge" and surge.cases == 4 and controls.cases == 14
    # A request rate multiplied by 2.5 is far outside any forecast band from its first
    # row (where seasonal naive has two days of history to forecast from).
    requests, = [o for o in result.outcomes if o.name.startswith("surge/requests/")]
    assert requests.found and requests.delay == 0
    assert surge.quick == sum(o.in_time for o in result.outcomes)
    assert (result.headline.met == ("surge",)) == (surge.in_time == 4)
    assert every.false_alarms == surge.false_alarms + controls.false_alarms
    assert list(result.by_step) == [300] and result.by_step[300][0] == surge


def test_a_higher_threshold_finds_no_more_and_alarms_no_more():
    cases = suite([1], [300], ["step_up"])
    replayed = replay_naive(replay_inputs(cases))
    low, high = assess(cases, replayed, 1.0), assess(cases, replayed, 50.0)
    assert high.rows[0].found <= low.rows[0].found
    assert high.rows[-1].false_alarms <= low.rows[-1].false_alarms
    assert high.rows[0].found == 0  # calibrated scores never reach 50 here
    first = replayed[0].labelled.scores
    assert np.isnan(first[0]) and np.isfinite(first[-1])


def test_a_replay_of_the_wrong_length_is_refused():
    cases = suite([1], [300], ["spike"], controls=False)
    with pytest.raises(ValueError, match="4 cases but 0 replays"):
        assess(cases, [], 1.0)
