import math

import numpy as np
import pytest

from openanomaly.domain.nab_scoring import (
    PROFILES,
    LabelledScores,
    best_threshold,
    evaluate,
    scaled_sigmoid,
    score_file,
)

STANDARD = PROFILES[0]
WINDOW = ((50, 59),)


def alarms_at(rows, n=100):
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def one_file(rows, windows=WINDOW, n=100):
    return LabelledScores("f.csv", alarms_at(rows, n), windows)


def test_scaled_sigmoid():
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_alarm_at_each_window_start_scores_100_and_silence_scores_0(profile):
    files = [
        LabelledScores("a", alarms_at([300, 620], n=1000), ((300, 339), (620, 659))),
        LabelledScores("b", alarms_at([80], n=200), ((80, 99),)),
        LabelledScores("c", np.zeros(500), ()),
    ]
    assert evaluate(files, profile).normalised == pytest.approx(100.0)
    silent = [LabelledScores(f.name, np.zeros_like(f.scores), f.windows) for f in files]
    assert evaluate(silent, profile).normalised == pytest.approx(0.0)


def test_a_late_alarm_in_a_window_earns_less_by_hand():
    # Row 55 of a 10-row window ending at 59: x = -(59 - 55 + 1) / 10 = -0.5.
    outcome = score_file(one_file([55]), 0.5, STANDARD)
    expected = (2 / (1 + math.exp(-2.5)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert outcome.raw == pytest.approx(expected)  # about 0.8598
    assert (outcome.hits, outcome.misses, outcome.false_alarms) == (1, 0, 0)


def test_only_the_first_alarm_of_a_window_counts():
    first = score_file(one_file([50]), 0.5, STANDARD)
    both = score_file(one_file([50, 57]), 0.5, STANDARD)
    assert both.raw == pytest.approx(first.raw) == pytest.approx(1.0)


def test_false_alarms_cost_less_right_after_a_window_by_hand():
    # Three rows after the window's end, with W - 1 = 9: x = 1/3.
    outcome = score_file(one_file([62]), 0.5, STANDARD)
    cost = 0.11 * (2 / (1 + math.exp(5 / 3)) - 1)  # about -0.0750
    assert outcome.raw == pytest.approx(cost - 1.0)  # plus the missed window
    far = score_file(one_file([95]), 0.5, STANDARD)  # 4 widths later: a full fp
    assert far.raw == pytest.approx(-0.11 - 1.0)
    before = score_file(one_file([20]), 0.5, STANDARD)  # no earlier window: a full fp
    assert (before.raw, before.false_alarms) == (pytest.approx(-1.11), 1)


def test_alarms_in_the_probation_period_are_ignored():
    # 100 rows: the first 15 are probation.
    outcome = score_file(one_file([3, 50]), 0.5, STANDARD)
    assert outcome.false_alarms == 0 and outcome.raw == pytest.approx(1.0)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_threshold_sweep_matches_brute_force(profile):
    rng = np.random.default_rng(4)
    files = []
    for index in range(4):
        scores = np.round(rng.random(300), 2)
        scores[rng.integers(0, 300, 5)] = np.nan
        files.append(LabelledScores(f"f{index}", scores, ((100, 119), (200, 229))))
    threshold, raw = best_threshold(files, profile)
    candidates = sorted({s for f in files for s in f.scores[np.isfinite(f.scores)]})
    brute = max(sum(score_file(f, t, profile).raw for f in files) for t in candidates)
    assert raw == pytest.approx(max(brute, -profile.fn * 8))
    assert sum(score_file(f, threshold, profile).raw for f in files) == pytest.approx(raw)
